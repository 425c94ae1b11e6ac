-- Take in a message moved from another queue. ARGV 4 id, 5 payload, 6 state, 7 mode
-- ('dl' a dead letter from ARGV 8; 'rd' redriven home), 9 the move's token. Idempotent: a
-- token adopted before is not adopted again.
if not load_cfg() then return reply('noqueue') end
local id = ARGV[4]
if not redis.call('ZSCORE', K_AD, ARGV[9]) then
  redis.call('ZADD', K_AD, fmt(NOW), ARGV[9])
  -- The id may still be here only because it waits in this queue's own outbox (it left, and
  -- is coming back before that move was cleaned up): this copy replaces it, and that stale
  -- outbox entry goes (its outbox_done then finds nothing to delete).
  redis.call('HDEL', K_OB, id)
  redis.call('ZREM', K_R, id)
  redis.call('ZREM', K_D, id)
  if redis.call('ZREM', K_F, id) == 1 then
    local old = get_state(id)
    if old then unlock_group(old.g) end
  end
  local st = parse_state(ARGV[6])
  redis.call('HSET', K_M, id, ARGV[5])
  if ARGV[7] == 'dl' then
    -- A dead letter has no time to live: it waits here to be looked at or redriven.
    st.exp = 0
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
  put_back(id, st)
  WOKE = 1
end
return reply('ok')
