-- ARGV 4 max, 5 visibility ms. Answers the lease end and id, payload, state per message.
if not load_cfg() then return reply('noqueue') end
maintain()
enforce_retention()
local max, lease = tonumber(ARGV[4]), NOW + tonumber(ARGV[5])
-- A paused queue hands out nothing (engine/pause.rs).
if cfg.paused then return reply('ok', fmt(lease), {}) end
local out = {}
local taken = 0
local function take(id, st)
  redis.call('ZREM', K_R, id)
  st.rc = st.rc + 1
  st.nonce = (st.nonce + 1) % 4294967296
  if st.first == 0 then st.first = NOW end
  put_state(id, st)
  redis.call('ZADD', K_F, fmt(lease), id)
  lock_group(st.g)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', K_M, id) or ''
  out[#out + 1] = redis.call('HGET', K_S, id)
  taken = taken + 1
end
if not cfg.fifo then
  -- Batched: one command per structure for the whole receive.
  local ids = redis.call('ZRANGE', K_R, 0, max - 1)
  if #ids > 0 then
    redis.call('ZREM', K_R, unpack(ids))
    local states = redis.call('HMGET', K_S, unpack(ids))
    local bodies = redis.call('HMGET', K_M, unpack(ids))
    local sset, fset = {}, {}
    for i, id in ipairs(ids) do
      if states[i] then
        local st = parse_state(states[i])
        st.rc = st.rc + 1
        st.nonce = (st.nonce + 1) % 4294967296
        if st.first == 0 then st.first = NOW end
        local s = fmt(st.rc) .. ',' .. fmt(st.nonce) .. ',' .. fmt(st.first) .. ',' .. st.g
          .. ',' .. fmt(st.enq) .. ',' .. st.src
        sset[#sset + 1] = id
        sset[#sset + 1] = s
        fset[#fset + 1] = fmt(lease)
        fset[#fset + 1] = id
        out[#out + 1] = id
        out[#out + 1] = bodies[i] or ''
        out[#out + 1] = s
        taken = taken + 1
      end
    end
    if taken > 0 then
      redis.call('HSET', K_S, unpack(sset))
      redis.call('ZADD', K_F, unpack(fset))
    end
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
