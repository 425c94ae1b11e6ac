-- ARGV 4 mode ('put' replaces the config, 'ensure' keeps an existing one), 5 config JSON,
-- 6 fifo, 7 delay ms, 8 max bytes, 9 retention ms, 10 max receives (0: none), 11 dlq,
-- 12 paused ('1': receives hand out nothing), 13 deduplication window ms, 14 default time to
-- live ms (0: none), 15 on_expire ('drop' or 'dl'), 16 max in flight per group (0: none),
-- 17 messages a second per group (0: none)
local created = 0
if redis.call('HEXISTS', K_CFG, 'config') == 1 then
  if ARGV[4] == 'put' and redis.call('HGET', K_CFG, 'config') ~= ARGV[5] then
    -- Resumed: waiting receives on every node look again.
    if redis.call('HGET', K_CFG, 'paused') == '1' and ARGV[12] ~= '1' then WOKE = 1 end
    -- A changed in-flight limit per group: waiting receives look again.
    if (redis.call('HGET', K_CFG, 'gcap') or '0') ~= ARGV[16] then WOKE = 1 end
    if (redis.call('HGET', K_CFG, 'grate') or '0') ~= ARGV[17] then WOKE = 1 end
    redis.call('HSET', K_CFG, 'config', ARGV[5], 'updated', fmt(NOW), 'delay', ARGV[7],
      'maxb', ARGV[8], 'ret', ARGV[9], 'maxr', ARGV[10], 'dlq', ARGV[11], 'paused', ARGV[12],
      'ddw', ARGV[13], 'ttl', ARGV[14], 'onexp', ARGV[15], 'gcap', ARGV[16], 'grate', ARGV[17])
  end
else
  redis.call('HSET', K_CFG, 'config', ARGV[5], 'created', fmt(NOW), 'updated', fmt(NOW),
    'fifo', ARGV[6], 'delay', ARGV[7], 'maxb', ARGV[8], 'ret', ARGV[9], 'maxr', ARGV[10],
    'dlq', ARGV[11], 'paused', ARGV[12], 'ddw', ARGV[13], 'ttl', ARGV[14], 'onexp', ARGV[15],
    'gcap', ARGV[16], 'grate', ARGV[17])
  created = 1
end
local v = redis.call('HMGET', K_CFG, 'config', 'created', 'updated')
return reply('ok', { created, v[1], v[2], v[3] })
