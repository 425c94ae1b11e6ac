-- Housekeeping of one queue: maintain, retention, expired deduplication windows; reports
-- moves left in the outbox (a node died half-way through one) and the message count.
if not load_cfg() then return reply('noqueue') end
maintain()
enforce_retention()
local gone = redis.call('ZRANGEBYSCORE', K_DZ, '-inf', fmt(NOW), 'LIMIT', 0, 10000)
for _, d in ipairs(gone) do
  redis.call('HDEL', K_DD, d)
  redis.call('ZREM', K_DZ, d)
end
if redis.call('HLEN', K_OB) > 0 then OUT = 1 end
-- Token buckets full for a second are forgotten (a new one starts full), a slice a tick.
if redis.call('HEXISTS', K_CFG, 'bucket_cursor') == 1 or cfg.grate > 0 then
  local scan = redis.call('HSCAN', K_LK, redis.call('HGET', K_CFG, 'bucket_cursor') or '0',
    'MATCH', 'r:*', 'COUNT', 500)
  for i = 1, #scan[2], 2 do
    local at = tonumber(string.match(scan[2][i + 1], ',(%-?%d+)$') or '0')
    if NOW - at >= 1000 then redis.call('HDEL', K_LK, scan[2][i]) end
  end
  if scan[1] == '0' then
    redis.call('HDEL', K_CFG, 'bucket_cursor')
  else
    redis.call('HSET', K_CFG, 'bucket_cursor', scan[1])
  end
end
-- Adopted-move tokens are kept a day (a repeat of a move comes within seconds).
redis.call('ZREMRANGEBYSCORE', K_AD, '-inf', fmt(NOW - 86400000))
return reply('ok', redis.call('HLEN', K_M))
