-- Answers id, moment pairs: ready (enqueued_at), delayed (due), in flight (lease end).
if not load_cfg() then return reply('noqueue') end
local out = {}
for _, id in ipairs(redis.call('ZRANGE', K_R, 0, -1)) do
  local st = get_state(id)
  out[#out + 1] = id
  out[#out + 1] = st and fmt(st.enq) or '0'
end
for _, key in ipairs({ K_D, K_F }) do
  local v = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  for i = 1, #v do out[#out + 1] = v[i] end
end
return reply('ok', out)
