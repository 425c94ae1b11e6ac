-- ARGV 4: how many of this queue's dead letters left its dead-letter queue for good.
if redis.call('EXISTS', K_CFG) == 1 then
  if redis.call('HINCRBY', K_ST, 'dead_lettered', -tonumber(ARGV[4])) < 0 then
    redis.call('HSET', K_ST, 'dead_lettered', 0)
  end
end
return reply('ok')
