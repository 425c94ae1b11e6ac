-- Answers the earliest delay end and lease end (empty lists when none).
if not load_cfg() then return reply('noqueue') end
return reply('ok', redis.call('ZRANGE', K_D, 0, 0, 'WITHSCORES'),
  redis.call('ZRANGE', K_F, 0, 0, 'WITHSCORES'))
