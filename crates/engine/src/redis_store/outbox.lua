-- Answers up to 1000 pending moves: id, "mode|target", payload, state.
local out = {}
local v = redis.call('HGETALL', K_OB)
for i = 1, math.min(#v, 2000), 2 do
  local id = v[i]
  out[#out + 1] = id
  out[#out + 1] = v[i + 1]
  out[#out + 1] = redis.call('HGET', K_M, id) or ''
  out[#out + 1] = redis.call('HGET', K_S, id) or '0,0,0,0,0,'
end
return reply('ok', out)
