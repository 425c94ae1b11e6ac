-- ARGV 4 delay ms, 5 front (1) or back (0), 6 count, then id, nonce pairs.
if not load_cfg() then return reply('noqueue') end
local delay, front, n = tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6])
local res = {}
local nacked = 0
for i = 0, n - 1 do
  local id = ARGV[7 + 2 * i]
  local st, why = lookup_lease(id, tonumber(ARGV[8 + 2 * i]))
  if st then
    redis.call('ZREM', K_F, id)
    unlock_group(st.g)
    nacked = nacked + 1
    res[#res + 1] = 'ok'
    if dead_letter_if_over_limit(id, st) then
      -- moved to the dead-letter queue
    elseif delay > 0 then
      redis.call('ZADD', K_D, fmt(NOW + delay), id)
      if front then redis.call('SADD', K_FW, id) end
      watch_ttl(id, st)
    elseif front then
      put_front(id, st)
      WOKE = 1
    else
      put_back(id, st)
      WOKE = 1
    end
  else
    res[#res + 1] = why
  end
end
if nacked > 0 then
  redis.call('HINCRBY', K_ST, 'nacked', nacked)
  if cfg.fifo and redis.call('ZCARD', K_R) > 0 then WOKE = 1 end
end
return reply('ok', res)
