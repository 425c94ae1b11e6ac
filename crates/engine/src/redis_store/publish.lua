-- ARGV 4 count, then 7 per message: id, payload, delay ms (-1: the queue's), dedup id,
-- group tag, size, enqueued_at
if not load_cfg() then return reply('noqueue') end
local n = tonumber(ARGV[4])
for i = 0, n - 1 do
  local size = tonumber(ARGV[5 + i * 7 + 5])
  if size > cfg.maxb then return reply('toobig', fmt(size), fmt(cfg.maxb)) end
end
local ids = {}
local published = 0
for i = 0, n - 1 do
  local b = 5 + i * 7
  local id, payload, delay, dedup, g, enq =
    ARGV[b], ARGV[b + 1], tonumber(ARGV[b + 2]), ARGV[b + 3], ARGV[b + 4], tonumber(ARGV[b + 6])
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
    redis.call('HSET', K_M, id, payload)
    put_state(id, { rc = 0, nonce = 0, first = 0, g = g, enq = enq, src = '' })
    if enq + delay > NOW then
      redis.call('ZADD', K_D, fmt(enq + delay), id)
    else
      put_back(id)
      WOKE = 1
    end
    published = published + 1
    ids[#ids + 1] = id
  end
end
if published > 0 then redis.call('HINCRBY', K_ST, 'published', published) end
return reply('ok', ids)
