-- ARGV 4 id, 5 nonce, 6 timeout ms (> 0). Answers the new lease end.
if not load_cfg() then return reply('noqueue') end
local st, why = lookup_lease(ARGV[4], tonumber(ARGV[5]))
if not st then return reply(why) end
local lease = NOW + tonumber(ARGV[6])
redis.call('ZADD', K_F, fmt(lease), ARGV[4])
return reply('ok', fmt(lease))
