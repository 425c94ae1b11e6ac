-- ARGV 4 limit. Answers id, payload, state, kind (r/d/f), visible_at per message.
if not load_cfg() then return reply('noqueue') end
maintain()
local limit = tonumber(ARGV[4])
local out = {}
local n = 0
local function add(id, kind, at)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', K_M, id) or ''
  out[#out + 1] = redis.call('HGET', K_S, id) or '0,0,0,0,0,'
  out[#out + 1] = kind
  out[#out + 1] = at
  n = n + 1
end
for _, id in ipairs(redis.call('ZRANGE', K_R, 0, fmt(limit - 1))) do add(id, 'r', fmt(NOW)) end
for _, key in ipairs({ { K_D, 'd' }, { K_F, 'f' } }) do
  if n < limit then
    local v = redis.call('ZRANGE', key[1], 0, fmt(limit - n - 1), 'WITHSCORES')
    for i = 1, #v, 2 do add(v[i], key[2], v[i + 1]) end
  end
end
return reply('ok', out)
