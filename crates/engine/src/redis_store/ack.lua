-- ARGV 4 count, then id, nonce pairs. Answers 'ok', 'gone' or 'stale' per receipt.
if not load_cfg() then return reply('noqueue') end
local n = tonumber(ARGV[4])
local res = {}
local acked = 0
for i = 0, n - 1 do
  local id = ARGV[5 + 2 * i]
  local st, why = leased(id, tonumber(ARGV[6 + 2 * i]))
  if st then
    redis.call('ZREM', K_F, id)
    unlock(st.g)
    forget(id, st)
    acked = acked + 1
    res[#res + 1] = 'ok'
  else
    res[#res + 1] = why
  end
end
if acked > 0 then redis.call('HINCRBY', K_ST, 'acked', acked) end
return reply('ok', res)
