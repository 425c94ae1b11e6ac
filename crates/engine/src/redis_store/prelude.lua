-- sluice's Redis backend: the shared part of every per-queue script. The queue rules here
-- have the names of the embedded store's (embedded/rules.rs), so the two read side by side:
-- maintain, dead_letter_if_over_limit, enforce_retention, lookup_lease, put_back,
-- lock_group and unlock_group.
--
-- Every key of one queue shares one hash tag, so a script touches one cluster slot.
-- KEYS (in this order, built by keys() in mod.rs):
--   1 cfg  hash: config (JSON), created, updated, fifo, delay, maxb, ret, maxr, dlq, paused,
--          seq, front
--   2 m    hash: id -> payload (group, dedup id, attributes, body; encoded by codec.rs)
--   3 s    hash: id -> state "receive_count,nonce,first_received_at,group_tag,enqueued_at,source"
--   4 r    zset: ready ids by delivery order
--   5 d    zset: delayed ids by the moment they become ready
--   6 f    zset: in-flight ids by lease end
--   7 lk   hash: FIFO group tag -> messages of the group in flight
--   8 dd   hash: deduplication id -> "window_end,id"
--   9 dz   zset: deduplication ids by window end (for expiry)
--  10 st   hash: counters (published, received, ...) and the dead_lettered gauge
--  11 fw   set:  delayed ids that return to the front when due
--  12 ob   hash: outbox, id -> "mode|target|token" for moves to another queue (another slot)
--  13 dl   set:  ids of the dead letters held in this queue
--  14 ad   zset: tokens of the moves this queue adopted, by when (makes adopt idempotent)
-- ARGV: 1 queue name, 2 now (ms), 3 wake-up channel, 4.. the script's own arguments.
-- Every script answers {status, woke, outbox, decrements, ...}: `woke` says messages became
-- ready, `outbox` that moves wait in `ob`, `decrements` the source queues whose dead_lettered
-- gauge must go down (they live in other slots, so the caller does it).
local K_CFG, K_M, K_S, K_R, K_D, K_F, K_LK, K_DD, K_DZ, K_ST, K_FW, K_OB, K_DL, K_AD =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10],
  KEYS[11], KEYS[12], KEYS[13], KEYS[14]
local QNAME = ARGV[1]
local NOW = tonumber(ARGV[2])
local CHANNEL = ARGV[3]
local WOKE = 0
local OUT = 0
local DECR = {}
local cfg = nil

local function fmt(n) return string.format('%d', n) end

local function load_cfg()
  local v = redis.call('HMGET', K_CFG, 'fifo', 'delay', 'maxb', 'ret', 'maxr', 'dlq', 'paused')
  if not v[1] then return false end
  cfg = { fifo = v[1] == '1', delay = tonumber(v[2]), maxb = tonumber(v[3]),
          ret = tonumber(v[4]), maxr = tonumber(v[5]), dlq = v[6] or '', paused = v[7] == '1' }
  return true
end

local function parse_state(s)
  local rc, nonce, first, g, enq, src =
    string.match(s, '^(%d+),(%d+),(%-?%d+),(%d+),(%-?%d+),(.*)$')
  return { rc = tonumber(rc), nonce = tonumber(nonce), first = tonumber(first), g = g,
           enq = tonumber(enq), src = src }
end

local function get_state(id)
  local s = redis.call('HGET', K_S, id)
  if not s then return nil end
  return parse_state(s)
end

local function put_state(id, t)
  redis.call('HSET', K_S, id, fmt(t.rc) .. ',' .. fmt(t.nonce) .. ',' .. fmt(t.first) .. ','
    .. t.g .. ',' .. fmt(t.enq) .. ',' .. t.src)
end

-- Ready order: a FIFO queue keeps publish (id) order: the score is the id's millisecond
-- prefix and equal scores sort by the hex id itself. Other queues: a counter at the back,
-- a falling counter at the front.
local function put_back(id)
  if cfg.fifo then
    redis.call('ZADD', K_R, fmt(tonumber(string.sub(id, 1, 12), 16)), id)
  else
    redis.call('ZADD', K_R, fmt(redis.call('HINCRBY', K_CFG, 'seq', 1)), id)
  end
end

local function put_front(id)
  if cfg.fifo then put_back(id) else
    redis.call('ZADD', K_R, fmt(redis.call('HINCRBY', K_CFG, 'front', -1)), id)
  end
end

local function lock_group(g)
  if cfg.fifo and g ~= '0' then redis.call('HINCRBY', K_LK, g, 1) end
end

local function unlock_group(g)
  if cfg.fifo and g ~= '0' then
    if redis.call('HINCRBY', K_LK, g, -1) <= 0 then redis.call('HDEL', K_LK, g) end
  end
end

-- The message leaves the store for good.
local function forget(id, st)
  redis.call('HDEL', K_M, id)
  redis.call('HDEL', K_S, id)
  redis.call('SREM', K_DL, id)
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

-- Due delays become ready; expired leases return, or go to the dead-letter queue once over
-- max_receives. Bounded per call; the rest is done by the next one.
local function maintain()
  local due = redis.call('ZRANGEBYSCORE', K_D, '-inf', fmt(NOW), 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    redis.call('ZREM', K_D, id)
    if redis.call('SREM', K_FW, id) == 1 then put_front(id) else put_back(id) end
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
        put_back(id)
        WOKE = 1
      end
    end
  end
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
