-- Push: settle leased copies after one attempt, and count it. ARGV 4 how: 'delivered' or
-- 'failed' (remove the copies), 'retried' or 'throttled' (visible again after ARGV 5 ms; with
-- ARGV 6 = '1', keep the lease until then instead, so a FIFO group stays locked), then 7
-- count, then id, nonce, tally key triples (a delivered or failed copy with a tally key also
-- counts under `tally:KEY:delivered|failed`). Answers 'ok', 'gone' or 'stale' per receipt.
if not load_cfg() then return reply('noqueue') end
local how, delay, hold, n = ARGV[4], tonumber(ARGV[5]), ARGV[6] == '1', tonumber(ARGV[7])
local remove = how == 'delivered' or how == 'failed'
local res, done, seen = {}, 0, {}
for i = 0, n - 1 do
  local id, tally = ARGV[8 + 3 * i], ARGV[10 + 3 * i]
  local st, why = nil, 'gone'
  if not seen[id] then st, why = lookup_lease(id, tonumber(ARGV[9 + 3 * i])) end
  if st then
    seen[id] = true
    done = done + 1
    res[#res + 1] = 'ok'
    if remove and tally ~= '' then
      redis.call('HINCRBY', K_ST, 'tally:' .. tally .. ':' .. how, 1)
    end
    if hold then
      redis.call('ZADD', K_F, fmt(NOW + delay), id)
    else
      redis.call('ZREM', K_F, id)
      unlock_group(st.g)
      if remove then
        forget(id, st)
      elseif delay > 0 then
        redis.call('ZADD', K_D, fmt(NOW + delay), id)
        watch_ttl(id, st)
      else
        put_back(id, st)
        WOKE = 1
      end
    end
  else
    res[#res + 1] = why
  end
end
if done > 0 then
  redis.call('HINCRBY', K_ST, how, done)
  if cfg.fifo and not hold and redis.call('ZCARD', K_R) > 0 then WOKE = 1 end
end
return reply('ok', res)
