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
-- Adopted-move tokens are kept a day (a repeat of a move comes within seconds).
redis.call('ZREMRANGEBYSCORE', K_AD, '-inf', fmt(NOW - 86400000))
return reply('ok', redis.call('HLEN', K_M))
