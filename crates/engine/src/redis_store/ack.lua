-- ARGV 4 count, then id, nonce pairs. Answers 'ok', 'gone' or 'stale' per receipt. The
-- removals are batched: one command per structure.
if not load_cfg() then return reply('noqueue') end
local n = tonumber(ARGV[4])
local res, gone, seen = {}, {}, {}
for i = 0, n - 1 do
  local id = ARGV[5 + 2 * i]
  if seen[id] then
    -- Settled earlier in this batch: as if acked already.
    res[#res + 1] = 'gone'
  else
    local st, why = lookup_lease(id, tonumber(ARGV[6 + 2 * i]))
    if st then
      seen[id] = true
      unlock_group(st.g)
      if st.exp > 0 then redis.call('ZREM', K_X, id) end
      if st.src ~= '' then DECR[#DECR + 1] = st.src end
      gone[#gone + 1] = id
      res[#res + 1] = 'ok'
    else
      res[#res + 1] = why
    end
  end
end
if #gone > 0 then
  redis.call('ZREM', K_F, unpack(gone))
  redis.call('HDEL', K_M, unpack(gone))
  redis.call('HDEL', K_S, unpack(gone))
  redis.call('SREM', K_DL, unpack(gone))
  redis.call('HINCRBY', K_ST, 'acked', #gone)
  -- A FIFO group freed: its next message may be ready for a waiter on another node.
  -- (And a group at max_in_flight_per_group takes turns again.)
  if (cfg.fifo or cfg.gcap > 0) and redis.call('ZCARD', K_R) > 0 then WOKE = 1 end
end
return reply('ok', res)
