-- Delete the queue and everything in it. Answers 1 if it existed.
if redis.call('EXISTS', K_CFG) == 0 then return reply('ok', 0) end
for _, id in ipairs(redis.call('SMEMBERS', K_DL)) do
  local st = get_state(id)
  if st and st.src ~= '' then DECR[#DECR + 1] = st.src end
end
redis.call('DEL', K_CFG, K_M, K_S, K_R, K_D, K_F, K_LK, K_DD, K_DZ, K_ST, K_FW, K_OB, K_DL, K_AD, K_X, K_GF)
return reply('ok', 1)
