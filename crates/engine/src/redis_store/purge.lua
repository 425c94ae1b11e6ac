-- Remove every message (moves already in the outbox finish). Answers how many.
if not load_cfg() then return reply('noqueue') end
local n = 0
for _, key in ipairs({ K_R, K_D, K_F }) do
  for _, id in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    forget(id, get_state(id))
    n = n + 1
  end
end
redis.call('DEL', K_R, K_D, K_F, K_LK, K_FW, K_X, K_GF)
return reply('ok', n)
