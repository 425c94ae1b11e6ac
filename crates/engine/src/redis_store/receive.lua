-- ARGV 4 max, 5 visibility ms. Answers the lease end and id, payload, state per message.
if not load_cfg() then return reply('noqueue') end
maintain()
retention()
local max, lease = tonumber(ARGV[4]), NOW + tonumber(ARGV[5])
local out = {}
local taken = 0
local function take(id, st)
  redis.call('ZREM', K_R, id)
  st.rc = st.rc + 1
  st.nonce = (st.nonce + 1) % 4294967296
  if st.first == 0 then st.first = NOW end
  put_state(id, st)
  redis.call('ZADD', K_F, fmt(lease), id)
  lock(st.g)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', K_M, id) or ''
  out[#out + 1] = redis.call('HGET', K_S, id)
  taken = taken + 1
end
if not cfg.fifo then
  for _, id in ipairs(redis.call('ZRANGE', K_R, 0, max - 1)) do
    local st = get_state(id)
    if st then take(id, st) else redis.call('ZREM', K_R, id) end
  end
else
  -- The first messages whose group no other consumer holds; this receive may keep taking
  -- from the groups it took from, in order. The scan is bounded.
  local mine = {}
  local skipped, scanned = 0, 0
  while taken < max and scanned < 10000 do
    local ids = redis.call('ZRANGE', K_R, skipped, skipped + 99)
    if #ids == 0 then break end
    for _, id in ipairs(ids) do
      if taken >= max then break end
      scanned = scanned + 1
      local st = get_state(id)
      if not st then
        redis.call('ZREM', K_R, id)
      elseif st.g == '0' or mine[st.g] or redis.call('HEXISTS', K_LK, st.g) == 0 then
        mine[st.g] = true
        take(id, st)
      else
        skipped = skipped + 1
      end
    end
  end
end
if taken > 0 then redis.call('HINCRBY', K_ST, 'received', taken) end
return reply('ok', fmt(lease), out)
