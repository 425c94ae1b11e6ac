-- Put dead letters held here in the outbox, bound home. ARGV 4 max, 5 only this source
-- ('' any), 6 count of ids to limit to (0: all), then those ids. Ready ones first, in order,
-- then delayed ones.
if not load_cfg() then return reply('noqueue') end
maintain()
local max, only_src, n_only = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local only = nil
if n_only > 0 then
  only = {}
  for i = 7, 6 + n_only do only[ARGV[i]] = true end
end
local moved = 0
for _, key in ipairs({ K_R, K_D }) do
  if moved < max then
    for _, id in ipairs(redis.call('ZRANGE', key, 0, -1)) do
      if moved >= max then break end
      if redis.call('SISMEMBER', K_DL, id) == 1 and (not only or only[id]) then
        local st = get_state(id)
        if st and st.src ~= '' and (only_src == '' or st.src == only_src) then
          redis.call('ZREM', key, id)
          redis.call('SREM', K_FW, id)
          move_out(id, st, 'rd', st.src)
          moved = moved + 1
        end
      end
    end
  end
end
return reply('ok', moved)
