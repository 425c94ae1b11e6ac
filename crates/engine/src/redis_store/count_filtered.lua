-- Push fan-out: ARGV 4 messages a subscription's filter kept out of this copy queue, added to
-- its `filtered` counter (reset with the other counters).
if not load_cfg() then return reply('noqueue') end
redis.call('HINCRBY', K_ST, 'filtered', tonumber(ARGV[4]))
return reply('ok')
