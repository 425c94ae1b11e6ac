-- The push attempts log (not a per-queue script: no prelude). KEYS 1 the message's list,
-- 2 the recency index. ARGV 1 message id, 2 attempt (JSON), 3 now, 4 attempts kept per
-- message, 5 messages kept, 6 age kept (ms). The first attempt of a message is always kept.
redis.call('RPUSH', KEYS[1], ARGV[2])
if redis.call('LLEN', KEYS[1]) > tonumber(ARGV[4]) then
  local first = redis.call('LINDEX', KEYS[1], 0)
  redis.call('LPOP', KEYS[1], 2)
  redis.call('LPUSH', KEYS[1], first)
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%d', tonumber(ARGV[3]) - tonumber(ARGV[6])))
local n = redis.call('ZCARD', KEYS[2])
if n > tonumber(ARGV[5]) then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - tonumber(ARGV[5]) - 1)
end
return 1
