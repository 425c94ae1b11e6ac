-- Finish moves: ARGV 4 count, then id, outcome pairs. 'done': the target has the message;
-- 'back': the target queue is gone, so the message stays here (ready again).
load_cfg()
local n = tonumber(ARGV[4])
for i = 0, n - 1 do
  local id, outcome = ARGV[5 + 2 * i], ARGV[6 + 2 * i]
  local entry = redis.call('HGET', K_OB, id)
  if entry then
    redis.call('HDEL', K_OB, id)
    if outcome == 'done' or not cfg then
      redis.call('HDEL', K_M, id)
      redis.call('HDEL', K_S, id)
    else
      if string.sub(entry, 1, 3) == 'dl|' then
        redis.call('HINCRBY', K_ST, 'dead_lettered', -1)
        redis.call('HINCRBY', K_ST, 'dead_lettered_total', -1)
      else
        redis.call('SADD', K_DL, id)
      end
      put_back(id)
      WOKE = 1
    end
  end
end
return reply('ok')
