-- Take in a message moved from another queue. ARGV 4 id, 5 payload, 6 state, 7 mode
-- ('dl' a dead letter from ARGV 8; 'rd' redriven home). Idempotent: a move repeated after a
-- crash finds the message already here.
if not load_cfg() then return reply('noqueue') end
local id = ARGV[4]
if redis.call('HEXISTS', K_S, id) == 0 then
  local st = parse_state(ARGV[6])
  redis.call('HSET', K_M, id, ARGV[5])
  if ARGV[7] == 'dl' then
    st.src = ARGV[8]
    redis.call('SADD', K_DL, id)
  else
    st.src = ''
    st.rc = 0
    redis.call('HINCRBY', K_ST, 'redriven', 1)
    if redis.call('HINCRBY', K_ST, 'dead_lettered', -1) < 0 then
      redis.call('HSET', K_ST, 'dead_lettered', 0)
    end
  end
  put_state(id, st)
  put_back(id)
  WOKE = 1
end
return reply('ok')
