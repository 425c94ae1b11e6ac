-- Finish moves: ARGV 4 count, then id, outcome, token triples. 'done': the target has the
-- message; 'back': the target queue is gone, so the message stays here (ready again). An
-- entry whose token differs (a later move of the same id) is left alone.
load_cfg()
local n = tonumber(ARGV[4])
for i = 0, n - 1 do
  local id, outcome, token = ARGV[5 + 3 * i], ARGV[6 + 3 * i], ARGV[7 + 3 * i]
  local entry = redis.call('HGET', K_OB, id)
  if entry and string.sub(entry, -(#token + 1)) == '|' .. token then
    redis.call('HDEL', K_OB, id)
    local st = get_state(id)
    local mode = string.sub(entry, 1, 2)
    if outcome == 'done' or not cfg then
      if mode == 'dl' and st and st.src ~= '' then DECR[#DECR + 1] = st.src end
      redis.call('HDEL', K_M, id)
      redis.call('HDEL', K_S, id)
    else
      if mode == 'dl' then
        redis.call('HINCRBY', K_ST, 'dead_lettered', -1)
        redis.call('HINCRBY', K_ST, 'dead_lettered_total', -1)
        if st and st.src ~= '' then redis.call('SADD', K_DL, id) end
      else
        redis.call('SADD', K_DL, id)
      end
      put_back(id, st or parse_state('0,0,0,0,0,'))
      WOKE = 1
    end
  end
end
return reply('ok')
