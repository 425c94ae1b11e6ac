-- Answers {ready, delayed, in_flight, oldest ready enqueued_at or -1} and the counters.
if not load_cfg() then return reply('noqueue') end
maintain()
local oldest = -1
local head = redis.call('ZRANGE', K_R, 0, 0)
if #head > 0 then
  local st = get_state(head[1])
  if st then oldest = st.enq end
end
return reply('ok', { redis.call('ZCARD', K_R), redis.call('ZCARD', K_D), redis.call('ZCARD', K_F),
  fmt(oldest) }, redis.call('HGETALL', K_ST))
