-- Answers the earliest delay end, lease end, and moment a group starved by
-- group_rate_per_second gets a token (empty lists when none).
if not load_cfg() then return reply('noqueue') end
local rw = tonumber(redis.call('HGET', K_CFG, 'rw') or '0')
local starved = {}
if rw > NOW then starved = { 'rw', fmt(rw) } end
return reply('ok', redis.call('ZRANGE', K_D, 0, 0, 'WITHSCORES'),
  redis.call('ZRANGE', K_F, 0, 0, 'WITHSCORES'), starved)
