-- ARGV 4 max, 5 visibility ms. Answers the lease end and id, payload, state per message.
if not load_cfg() then return reply('noqueue') end
maintain()
enforce_retention()
local max, lease = tonumber(ARGV[4]), NOW + tonumber(ARGV[5])
-- A paused queue hands out nothing (engine/pause.rs).
if cfg.paused then return reply('ok', fmt(lease), {}) end
local out = {}
local taken, old = 0, 0
local top = {}
-- Past the retention period: dropped on the way (enforce_retention looks only at the head).
local function too_old(id, st)
  if st.enq + cfg.ret > NOW then return false end
  forget(id, st)
  old = old + 1
  return true
end
local function lease_it(id, st)
  st.rc = st.rc + 1
  st.nonce = (st.nonce + 1) % 4294967296
  if st.first == 0 then st.first = NOW end
  lock_group(st.g)
  if st.exp > 0 then redis.call('ZREM', K_X, id) end
  local s = state_string(st)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', K_M, id) or ''
  out[#out + 1] = s
  taken = taken + 1
  return s
end
local function seen(score)
  if cfg.fifo then return end
  local p = priority_of(score)
  if not top[p] or score > top[p] then top[p] = score end
end
if not cfg.fifo and cfg.gcap == 0 and cfg.grate == 0 then
  -- Batched: one command per structure for the whole receive.
  local v = redis.call('ZRANGE', K_R, 0, max - 1, 'WITHSCORES')
  if #v > 0 then
    local ids = {}
    for i = 1, #v, 2 do ids[#ids + 1] = v[i] end
    redis.call('ZREM', K_R, unpack(ids))
    local states = redis.call('HMGET', K_S, unpack(ids))
    local sset, fset = {}, {}
    for i, id in ipairs(ids) do
      seen(tonumber(v[2 * i]))
      if states[i] then
        local st = parse_state(states[i])
        if not too_old(id, st) then
          sset[#sset + 1] = id
          sset[#sset + 1] = lease_it(id, st)
          fset[#fset + 1] = fmt(lease)
          fset[#fset + 1] = id
        end
      end
    end
    if #sset > 0 then
      redis.call('HSET', K_S, unpack(sset))
      redis.call('ZADD', K_F, unpack(fset))
    end
  end
else
  -- One at a time, skipping what may not be taken now: on a FIFO queue the first messages
  -- whose group no other consumer holds (this receive may keep taking from the groups it
  -- took from, in order); on a standard queue with max_in_flight_per_group or
  -- group_rate_per_second, groups at the limit. The scan is bounded.
  local mine, blocked = {}, {}
  local skipped, scanned = 0, 0
  while taken < max and scanned < 10000 do
    local v = redis.call('ZRANGE', K_R, skipped, skipped + 99, 'WITHSCORES')
    if #v == 0 then break end
    for i = 1, #v, 2 do
      if taken >= max then break end
      local id = v[i]
      scanned = scanned + 1
      local st = get_state(id)
      local ok
      if not st then
        ok = false
      elseif cfg.fifo then
        ok = st.g == '0' or mine[st.g] or redis.call('HEXISTS', K_LK, st.g) == 0
      else
        -- (A group found blocked stays so for the rest of this receive.)
        if not blocked[st.g] and group_blocked(st.g) then blocked[st.g] = true end
        ok = not blocked[st.g]
      end
      if not st then
        redis.call('ZREM', K_R, id)
      elseif ok then
        mine[st.g] = true
        redis.call('ZREM', K_R, id)
        seen(tonumber(v[i + 1]))
        if not too_old(id, st) then
          if not cfg.fifo then take_token(st.g) end
          lease_it(id, st)
          put_state(id, st)
          redis.call('ZADD', K_F, fmt(lease), id)
        end
      else
        skipped = skipped + 1
      end
    end
  end
end
advance_vtime(top)
if old > 0 then redis.call('HINCRBY', K_ST, 'expired', old) end
if taken > 0 then redis.call('HINCRBY', K_ST, 'received', taken) end
return reply('ok', fmt(lease), out)
