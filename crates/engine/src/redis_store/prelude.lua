-- sluice's Redis backend: the shared part of every per-queue script. The queue rules here
-- have the names of the embedded store's (embedded/rules.rs), so the two read side by side:
-- maintain, dead_letter_if_over_limit, enforce_retention, lookup_lease, put_back,
-- lock_group and unlock_group.
--
-- Every key of one queue shares one hash tag, so a script touches one cluster slot.
-- KEYS (in this order, built by keys() in mod.rs):
--   1 cfg  hash: config (JSON), created, updated, fifo, delay, maxb, ret, maxr, dlq, paused,
--          ddw (deduplication window ms), ttl (default time to live ms, 0 none), onexp
--          ('drop' or 'dl'), gcap (in-flight limit per group, 0 none), grate (messages a
--          second per group, 0 none), rw (when a group starved by grate gets a token), and
--          v0..v9 (each priority's virtual time: the highest ready score taken from it)
--   2 m    hash: id -> payload (group, dedup id, attributes, body; encoded by codec.rs)
--   3 s    hash: id -> state "receive_count,nonce,first_received_at,group_tag,enqueued_at,source"
--          then ";priority,expires_at" when either differs from its default (4, 0)
--   4 r    zset: ready ids by delivery order (see put_back)
--   5 d    zset: delayed ids by the moment they become ready
--   6 f    zset: in-flight ids by lease end
--   7 lk   hash: group tag -> messages of the group in flight; "r:" .. tag -> the group's
--          token bucket under grate, "tokens,when"
--   8 dd   hash: deduplication id -> "window_end,id"
--   9 dz   zset: deduplication ids by window end (for expiry)
--  10 st   hash: counters (published, received, ...) and the dead_lettered gauge
--  11 fw   set:  delayed ids that return to the front when due
--  12 ob   hash: outbox, id -> "mode|target|token" for moves to another queue (another slot)
--  13 dl   set:  ids of the dead letters held in this queue
--  14 ad   zset: tokens of the moves this queue adopted, by when (makes adopt idempotent)
--  15 x    zset: ids of messages with a time to live, by its end (put back when they return)
--  16 gf   zset: "priority:group tag" -> the score of the group's last ready message (fair
--          turns; tags at or below their priority's virtual time are dropped)
-- ARGV: 1 queue name, 2 now (ms), 3 wake-up channel, 4.. the script's own arguments.
-- Every script answers {status, woke, outbox, decrements, ...}: `woke` says messages became
-- ready, `outbox` that moves wait in `ob`, `decrements` the source queues whose dead_lettered
-- gauge must go down (they live in other slots, so the caller does it).
local K_CFG, K_M, K_S, K_R, K_D, K_F, K_LK, K_DD, K_DZ, K_ST, K_FW, K_OB, K_DL, K_AD, K_X, K_GF =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10],
  KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[15], KEYS[16]
local QNAME = ARGV[1]
local NOW = tonumber(ARGV[2])
local CHANNEL = ARGV[3]
local WOKE = 0
local OUT = 0
local DECR = {}
local cfg = nil

local function fmt(n) return string.format('%d', n) end

local function load_cfg()
  local v = redis.call('HMGET', K_CFG, 'fifo', 'delay', 'maxb', 'ret', 'maxr', 'dlq', 'paused',
    'ddw', 'ttl', 'onexp', 'gcap', 'grate')
  if not v[1] then return false end
  cfg = { fifo = v[1] == '1', delay = tonumber(v[2]), maxb = tonumber(v[3]),
          ret = tonumber(v[4]), maxr = tonumber(v[5]), dlq = v[6] or '', paused = v[7] == '1',
          ddw = tonumber(v[8] or '300000'), ttl = tonumber(v[9] or '0'), onexp = v[10] or 'drop',
          gcap = tonumber(v[11] or '0'), grate = tonumber(v[12] or '0') }
  return true
end

local function parse_state(s)
  local rc, nonce, first, g, enq, src, p, exp =
    string.match(s, '^(%d+),(%d+),(%-?%d+),(%d+),(%-?%d+),([^;]*);?(%d*),?(%-?%d*)$')
  return { rc = tonumber(rc), nonce = tonumber(nonce), first = tonumber(first), g = g,
           enq = tonumber(enq), src = src, p = tonumber(p) or 4, exp = tonumber(exp) or 0 }
end

local function state_string(t)
  local s = fmt(t.rc) .. ',' .. fmt(t.nonce) .. ',' .. fmt(t.first) .. ',' .. t.g .. ','
    .. fmt(t.enq) .. ',' .. t.src
  if t.p ~= 4 or t.exp ~= 0 then s = s .. ';' .. fmt(t.p) .. ',' .. fmt(t.exp) end
  return s
end

local function get_state(id)
  local s = redis.call('HGET', K_S, id)
  if not s then return nil end
  return parse_state(s)
end

local function put_state(id, t)
  redis.call('HSET', K_S, id, state_string(t))
end

-- Ready order. A FIFO queue keeps publish (id) order: the score is the id's millisecond
-- prefix and equal scores sort by the hex id itself. Other queues (embedded/ready.rs says
-- the same rules): each priority owns a band of scores, higher priorities lower bands, so
-- they come first (strict priority). Inside a band, fair turns between message groups by
-- start-time fair queueing: a message's score is one past the larger of its group's last
-- score and the band's virtual time (the highest score taken from it), so every group with
-- ready messages has one at each step; messages without a group are group 0.
local BAND = 140737488355328 -- 2^47 scores per priority
local BASE = 1099511627776 -- 2^40: where a band's virtual time starts

local function band(p) return (9 - p) * BAND end

local function priority_of(score)
  local p = 9 - math.floor(score / BAND)
  if p < 0 then return 0 elseif p > 9 then return 9 end
  return p
end

local function vtime(p)
  return tonumber(redis.call('HGET', K_CFG, 'v' .. p) or fmt(band(p) + BASE))
end

-- The score of the next ready message of group g at priority p (and remember it).
local function fair_score(p, g)
  local member = fmt(p) .. ':' .. g
  local s = vtime(p)
  local last = tonumber(redis.call('ZSCORE', K_GF, member) or '0')
  if last > s then s = last end
  s = s + 1
  redis.call('ZADD', K_GF, fmt(s), member)
  return s
end

-- Scores taken from the ready set move their bands' virtual time (`top`: priority ->
-- highest score taken); group tags now at or below it are dropped (a new message of such a
-- group starts from the virtual time anyway).
local function advance_vtime(top)
  for p, s in pairs(top) do
    if s > vtime(p) then
      redis.call('HSET', K_CFG, 'v' .. p, fmt(s))
      redis.call('ZREMRANGEBYSCORE', K_GF, fmt(band(p)), fmt(s))
    end
  end
end

-- A message with a time to live is watched while it can still be delivered.
local function watch_ttl(id, st)
  if st.exp > 0 then redis.call('ZADD', K_X, fmt(st.exp), id) end
end

local function put_back(id, st)
  if cfg.fifo then
    redis.call('ZADD', K_R, fmt(tonumber(string.sub(id, 1, 12), 16)), id)
  else
    redis.call('ZADD', K_R, fmt(fair_score(st.p, st.g)), id)
  end
  watch_ttl(id, st)
end

-- Ahead of everything waiting at the message's priority.
local function put_front(id, st)
  if cfg.fifo then return put_back(id, st) end
  local lo = band(st.p)
  local s = vtime(st.p)
  local head = redis.call('ZRANGEBYSCORE', K_R, fmt(lo), '(' .. fmt(lo + BAND), 'WITHSCORES',
    'LIMIT', 0, 1)
  if #head > 0 and tonumber(head[2]) < s then s = tonumber(head[2]) end
  redis.call('ZADD', K_R, fmt(s - 1), id)
  watch_ttl(id, st)
end

-- Leased messages per group: FIFO queues hold a group while one is leased; standard queues
-- check the count against gcap (max_in_flight_per_group).
local function lock_group(g)
  if g ~= '0' then redis.call('HINCRBY', K_LK, g, 1) end
end

local function unlock_group(g)
  if g ~= '0' then
    if redis.call('HINCRBY', K_LK, g, -1) <= 0 then redis.call('HDEL', K_LK, g) end
  end
end

local function group_full(g)
  return cfg.gcap > 0 and g ~= '0' and tonumber(redis.call('HGET', K_LK, g) or '0') >= cfg.gcap
end

-- Rate per group (grate a second, burst the same): the group's tokens now (a new bucket is
-- full). Embedded: rules.rs `bucket`.
local function tokens(g)
  local b = redis.call('HGET', K_LK, 'r:' .. g)
  if not b then return cfg.grate end
  local t, at = string.match(b, '^(%-?[%d.]+),(%-?%d+)$')
  local n = tonumber(t) + (NOW - tonumber(at)) * cfg.grate / 1000
  if n > cfg.grate then n = cfg.grate end
  return n
end

-- May group g not have a message now (its in-flight limit, or no token)? A group short of a
-- token leaves the moment its next one comes in cfg 'rw', for long polls (next_due).
local function group_blocked(g)
  if g == '0' then return false end
  if group_full(g) then return true end
  if cfg.grate == 0 then return false end
  local n = tokens(g)
  if n >= 1 then return false end
  local at = NOW + math.ceil((1 - n) * 1000 / cfg.grate)
  local rw = tonumber(redis.call('HGET', K_CFG, 'rw') or '0')
  if rw <= NOW or at < rw then redis.call('HSET', K_CFG, 'rw', fmt(at)) end
  return true
end

local function take_token(g)
  if cfg.grate > 0 and g ~= '0' then
    redis.call('HSET', K_LK, 'r:' .. g, string.format('%.6f', tokens(g) - 1) .. ',' .. fmt(NOW))
  end
end

-- The message leaves the store for good.
local function forget(id, st)
  redis.call('HDEL', K_M, id)
  redis.call('HDEL', K_S, id)
  redis.call('SREM', K_DL, id)
  if not st or st.exp > 0 then redis.call('ZREM', K_X, id) end
  if st and st.src ~= '' then DECR[#DECR + 1] = st.src end
end

-- Park the message in the outbox for a move to `target` (mode 'dl': dead-lettered there;
-- 'rd': redriven home). The caller completes the move with the adopt and outbox_done scripts.
-- Each move has a token (this queue's name and a counter): the target remembers the tokens it
-- adopted, so a move repeated after a crash, or drained by two nodes at once, lands once.
-- The old source's dead_lettered gauge goes down when the move is done (outbox_done).
local function move_out(id, st, mode, target)
  local token = QNAME .. ':' .. fmt(redis.call('HINCRBY', K_CFG, 'moves', 1))
  redis.call('HSET', K_OB, id, mode .. '|' .. target .. '|' .. token)
  redis.call('SREM', K_DL, id)
  redis.call('ZREM', K_X, id)
  if mode == 'dl' then
    redis.call('HINCRBY', K_ST, 'dead_lettered', 1)
    redis.call('HINCRBY', K_ST, 'dead_lettered_total', 1)
  end
  OUT = 1
end

-- The dead-letter rule: a message returning to its queue after max_receives receives moves
-- to the queue's dead-letter queue instead. Returns true if it moved.
local function dead_letter_if_over_limit(id, st)
  if cfg.maxr > 0 and cfg.dlq ~= '' and st.rc >= cfg.maxr then
    move_out(id, st, 'dl', cfg.dlq)
    return true
  end
  return false
end

-- The time-to-live rule: messages whose end passed and that wait (ready or delayed) are never
-- delivered: dropped or dead-lettered (on_expire), counted in `expired`. Leased ones are
-- looked at again when they return (put_back watches them).
local function expire_due()
  local ended = redis.call('ZRANGEBYSCORE', K_X, '-inf', fmt(NOW), 'LIMIT', 0, 1000)
  local n = 0
  for _, id in ipairs(ended) do
    redis.call('ZREM', K_X, id)
    local waiting = redis.call('ZREM', K_R, id) == 1
    if not waiting and redis.call('ZREM', K_D, id) == 1 then
      redis.call('SREM', K_FW, id)
      waiting = true
    end
    local st = waiting and get_state(id)
    if st then
      n = n + 1
      if cfg.onexp == 'dl' and cfg.dlq ~= '' then
        move_out(id, st, 'dl', cfg.dlq)
      else
        forget(id, st)
      end
    end
  end
  if n > 0 then redis.call('HINCRBY', K_ST, 'expired', n) end
end

-- Due delays become ready; expired leases return, or go to the dead-letter queue once over
-- max_receives; messages past their time to live leave. Bounded per call; the rest is done
-- by the next one.
local function maintain()
  local due = redis.call('ZRANGEBYSCORE', K_D, '-inf', fmt(NOW), 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    redis.call('ZREM', K_D, id)
    local st = get_state(id) or parse_state('0,0,0,0,0,')
    if redis.call('SREM', K_FW, id) == 1 then put_front(id, st) else put_back(id, st) end
    WOKE = 1
  end
  local exp = redis.call('ZRANGEBYSCORE', K_F, '-inf', fmt(NOW), 'LIMIT', 0, 1000)
  if #exp > 0 then redis.call('HINCRBY', K_ST, 'visibility_timeouts', #exp) end
  for _, id in ipairs(exp) do
    redis.call('ZREM', K_F, id)
    local st = get_state(id)
    if st then
      unlock_group(st.g)
      if not dead_letter_if_over_limit(id, st) then
        put_back(id, st)
        WOKE = 1
      end
    end
  end
  expire_due()
end

-- Drop ready messages at the head that outlived the retention period.
local function enforce_retention()
  local n = 0
  while n < 10000 do
    local head = redis.call('ZRANGE', K_R, 0, 99)
    if #head == 0 then break end
    local stop = false
    for _, id in ipairs(head) do
      local st = get_state(id)
      if st and st.enq + cfg.ret > NOW then
        stop = true
        break
      end
      redis.call('ZREM', K_R, id)
      forget(id, st)
      n = n + 1
    end
    if stop then break end
  end
  if n > 0 then redis.call('HINCRBY', K_ST, 'expired', n) end
end

-- A lease held by (id, nonce) at NOW: the state, or nil and why not.
local function lookup_lease(id, nonce)
  local lease = redis.call('ZSCORE', K_F, id)
  if not lease then return nil, 'gone' end
  local st = get_state(id)
  if not st or st.nonce ~= nonce then return nil, 'stale' end
  if tonumber(lease) <= NOW then return nil, 'stale' end
  return st
end

local function reply(status, ...)
  if WOKE == 1 and CHANNEL ~= '' then redis.call('PUBLISH', CHANNEL, 'q:' .. QNAME) end
  return { status, WOKE, OUT, DECR, ... }
end
