-- The delivery history (not a per-queue script: no prelude). KEYS 1 the key's recency index
-- (a sorted set of message ids by attempt time), then one list per message. ARGV 1 the
-- attempt (JSON), 2 its time, 3 how long it is kept (ms, from now: relative, so the nodes'
-- clocks need not agree with Redis's), 4 attempts kept per message, 5 messages kept in the
-- index, then the message ids (in the order of the lists). A message keeps its first attempt
-- and the latest ones; a list lives as long as its latest attempt.
local json, at, keep = ARGV[1], ARGV[2], ARGV[3]
local per_message, recent = tonumber(ARGV[4]), tonumber(ARGV[5])
for i = 2, #KEYS do
  local l = KEYS[i]
  redis.call('RPUSH', l, json)
  if redis.call('LLEN', l) > per_message then
    local first = redis.call('LINDEX', l, 0)
    redis.call('LPOP', l, 2)
    redis.call('LPUSH', l, first)
  end
  redis.call('PEXPIRE', l, keep)
  redis.call('ZADD', KEYS[1], at, ARGV[4 + i])
end
local n = redis.call('ZCARD', KEYS[1])
if n > recent then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - recent - 1) end
redis.call('PEXPIRE', KEYS[1], keep)
return 1
