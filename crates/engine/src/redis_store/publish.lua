-- ARGV 4 count, then 7 per message: id, payload, delay ms (-1: the queue's), dedup id,
-- group tag, size, enqueued_at. Writes are batched: one HSET/ZADD per structure.
if not load_cfg() then return reply('noqueue') end
local n = tonumber(ARGV[4])
for i = 0, n - 1 do
  local size = tonumber(ARGV[5 + i * 7 + 5])
  if size > cfg.maxb then return reply('toobig', fmt(size), fmt(cfg.maxb)) end
end
local ids, mset, sset, ready, delayed = {}, {}, {}, {}, {}
for i = 0, n - 1 do
  local b = 5 + i * 7
  local id, delay, dedup, g, enq =
    ARGV[b], tonumber(ARGV[b + 2]), ARGV[b + 3], ARGV[b + 4], tonumber(ARGV[b + 6])
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
      local window_end = fmt(NOW + 300000)
      redis.call('HSET', K_DD, dedup, window_end .. ',' .. id)
      redis.call('ZADD', K_DZ, window_end, dedup)
    end
  end
  if not repeated then
    if delay < 0 then delay = cfg.delay end
    mset[#mset + 1] = id
    mset[#mset + 1] = ARGV[b + 1]
    sset[#sset + 1] = id
    sset[#sset + 1] = '0,0,0,' .. g .. ',' .. fmt(enq) .. ','
    if enq + delay > NOW then
      delayed[#delayed + 1] = fmt(enq + delay)
      delayed[#delayed + 1] = id
    else
      ready[#ready + 1] = id
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
if #ready > 0 then
  local z = {}
  if cfg.fifo then
    for _, id in ipairs(ready) do
      z[#z + 1] = fmt(tonumber(string.sub(id, 1, 12), 16))
      z[#z + 1] = id
    end
  else
    local first = redis.call('HINCRBY', K_CFG, 'seq', #ready) - #ready
    for i, id in ipairs(ready) do
      z[#z + 1] = fmt(first + i)
      z[#z + 1] = id
    end
  end
  redis.call('ZADD', K_R, unpack(z))
  WOKE = 1
end
return reply('ok', ids)
