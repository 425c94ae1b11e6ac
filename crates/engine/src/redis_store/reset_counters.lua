-- Set the queue's counters back to zero; the dead_lettered gauge is not a counter and stays.
if not load_cfg() then return reply('noqueue') end
local kept = redis.call('HGET', K_ST, 'dead_lettered')
redis.call('DEL', K_ST)
if kept then redis.call('HSET', K_ST, 'dead_lettered', kept) end
return reply('ok')
