-- ARGV 4 count, then 9 per message: id, payload, delay ms (-1: the queue's), dedup id,
-- group tag, size, enqueued_at, priority, expires_at (0: the queue's default time to live).
-- Writes are batched: one HSET/ZADD per structure.
if not load_cfg() then return reply('noqueue') end
local n = tonumber(ARGV[4])
local W = 9
for i = 0, n - 1 do
  local size = tonumber(ARGV[5 + i * W + 5])
  if size > cfg.maxb then return reply('toobig', fmt(size), fmt(cfg.maxb)) end
end
local ids, mset, sset, ready, delayed, ttls = {}, {}, {}, {}, {}, {}
for i = 0, n - 1 do
  local b = 5 + i * W
  local id, delay, dedup, g, enq, p, exp =
    ARGV[b], tonumber(ARGV[b + 2]), ARGV[b + 3], ARGV[b + 4], tonumber(ARGV[b + 6]),
    tonumber(ARGV[b + 7]), tonumber(ARGV[b + 8])
  local repeated = false
  if dedup ~= '' then
    local v = redis.call('HGET', K_DD, dedup)
    if v then
      local window_end, earlier = string.match(v, '^(%-?%d+),(%x+)$')
      if tonumber(window_end) > NOW then
        ids[#ids + 1] = earlier
        repeated = true
      end
    end
    if not repeated then
      local window_end = fmt(NOW + cfg.ddw)
      redis.call('HSET', K_DD, dedup, window_end .. ',' .. id)
      redis.call('ZADD', K_DZ, window_end, dedup)
    end
  end
  if not repeated then
    if delay < 0 then delay = cfg.delay end
    if exp == 0 and cfg.ttl > 0 then exp = enq + cfg.ttl end
    local st = { rc = 0, nonce = 0, first = 0, g = g, enq = enq, src = '', p = p, exp = exp }
    mset[#mset + 1] = id
    mset[#mset + 1] = ARGV[b + 1]
    sset[#sset + 1] = id
    sset[#sset + 1] = state_string(st)
    if exp > 0 then
      ttls[#ttls + 1] = fmt(exp)
      ttls[#ttls + 1] = id
    end
    if enq + delay > NOW then
      delayed[#delayed + 1] = fmt(enq + delay)
      delayed[#delayed + 1] = id
    else
      ready[#ready + 1] = { id, st }
    end
    ids[#ids + 1] = id
  end
end
if #mset > 0 then
  redis.call('HSET', K_M, unpack(mset))
  redis.call('HSET', K_S, unpack(sset))
  redis.call('HINCRBY', K_ST, 'published', #mset / 2)
end
if #delayed > 0 then redis.call('ZADD', K_D, unpack(delayed)) end
if #ttls > 0 then redis.call('ZADD', K_X, unpack(ttls)) end
if #ready > 0 then
  local z = {}
  if cfg.fifo then
    for _, r in ipairs(ready) do
      z[#z + 1] = fmt(tonumber(string.sub(r[1], 1, 12), 16))
      z[#z + 1] = r[1]
    end
  else
    -- Fair scores (put_back's rule), with each band's virtual time and each group's last
    -- score read once for the batch and the groups' new last scores written once.
    local vt, last, order = {}, {}, {}
    for _, r in ipairs(ready) do
      local st = r[2]
      local member = fmt(st.p) .. ':' .. st.g
      if not vt[st.p] then vt[st.p] = vtime(st.p) end
      if last[member] == nil then
        last[member] = tonumber(redis.call('ZSCORE', K_GF, member) or '0')
        order[#order + 1] = member
      end
      local s = math.max(last[member], vt[st.p]) + 1
      last[member] = s
      z[#z + 1] = fmt(s)
      z[#z + 1] = r[1]
    end
    local gf = {}
    for _, member in ipairs(order) do
      gf[#gf + 1] = fmt(last[member])
      gf[#gf + 1] = member
    end
    redis.call('ZADD', K_GF, unpack(gf))
  end
  redis.call('ZADD', K_R, unpack(z))
  WOKE = 1
end
return reply('ok', ids)
