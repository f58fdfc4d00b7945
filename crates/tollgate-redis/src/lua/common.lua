-- Shared by every script of tollgate-redis (prepended to each one).
--
-- Time is whole microseconds since the Unix epoch from the server's own clock, so every client
-- agrees; Lua numbers are doubles, exact for integers up to 2^53 (about 285 years of µs).
--
-- The admission script is what bounds a Redis's admissions a second, and in it every
-- redis.call, every call into C (struct, math, string) and every Lua table costs (measured with
-- callgrind on redis-server 7.0: a SET is ~6,500 instructions, a SET … PX ~14,000, a 31-number
-- table ~12,000). So a scope's state is one binary string key, read with one MGET for every
-- scope of a call and written with one SET; the numbers of a call come packed in one binary
-- argument. Both are little-endian doubles (`struct`), read in place at byte offsets: turning
-- numbers into decimal text and back is the slowest thing a script can do.
--
-- A scope's state: its cooldown end, then per bucket its id (dimension × 10^15 + period in µs),
-- its theoretical arrival time (TAT) in µs and the rate it was charged at (units per period ×
-- 1000), then when the key expires (µs, a whole ms). The expiry is written in the state so that
-- a write that needs no later one keeps the key's (SET … KEEPTTL costs half a SET … PXAT).
local function now_us()
  local t = redis.call('TIME')
  return t[1] * 1000000 + t[2]
end

-- An idle key goes between SLACK and 2 × SLACK after its state has become that of a fresh key:
-- a key written again that needs a later expiry gets one 2 × SLACK after, so that a busy key
-- changes its expiry once every SLACK or so, not at every call.
local SLACK = 1000000

-- The parts of state `s` (false or nil: a missing key, a fresh scope): its cooldown end, the
-- byte just after its last bucket (its buckets are at 9, 33, 57, ...), and when the key expires
-- (0: missing or not known).
local function state(s)
  if not s then
    return 0, 8, 0
  end
  local len = #s
  local cd = struct.unpack('<d', s)
  if len % 24 == 16 then
    return cd, len - 8, (struct.unpack('<d', s, len - 7))
  end
  -- Written without its expiry (by an earlier version).
  return cd, len, 0
end

-- The TAT and rate of bucket `id` in state `s` whose buckets end before byte `e`, looked up at
-- byte `q` first (a state keeps the order of the calls that write it); 0, 0 if never charged.
local function bucket(s, e, q, id)
  if q < e then
    local sid, tat, rate = struct.unpack('<ddd', s, q)
    if sid == id then
      return tat, rate
    end
  end
  for j = 9, e - 1, 24 do
    local sid, tat, rate = struct.unpack('<ddd', s, j)
    if sid == id then
      return tat, rate
    end
  end
  return 0, 0
end

-- A TAT charged at rate `old` carried over to rate `new`: the units it owes stay owed.
local function carried(tat, old, new, now)
  if old == new or old == 0 or tat <= now then
    return tat
  end
  return now + math.ceil((tat - now) * old / new)
end

-- The expiry of a state written now that is fresh again at `fresh` (µs), when its key's expiry
-- is `dl` (from `state`): the new expiry in µs, and the one to set in ms (PXAT), or false to keep
-- the key's.
local function expiry(fresh, dl)
  if fresh + SLACK <= dl then
    return dl, false
  end
  local slack = SLACK
  if dl > 0 then
    slack = 2 * SLACK
  end
  local at = math.ceil((fresh + slack) / 1000)
  return at * 1000, at
end

-- Writes state `v` (packed) to `key`, with the expiry `at` from `expiry`.
local function put(key, v, at)
  if at then
    redis.call('SET', key, v, 'PXAT', at)
  else
    redis.call('SET', key, v, 'KEEPTTL')
  end
end

-- A scope's state as a table: its cooldown end and {{id, tat, rate}...}, and its key's expiry.
local function decode(s)
  local cd, e, dl = state(s)
  local list = {}
  for j = 9, e - 1, 24 do
    local id, tat, rate = struct.unpack('<ddd', s, j)
    list[#list + 1] = { id, tat, rate }
  end
  return cd, list, dl
end

-- The bucket `id` in a decoded list (usually at `hint`: the state keeps the call's order).
local function find(list, id, hint)
  local e = list[hint]
  if e and e[1] == id then
    return e
  end
  for _, x in ipairs(list) do
    if x[1] == id then
      return x
    end
  end
  return nil
end

-- Writes a decoded state.
local function store(key, cd, list, dl, now)
  local w, fresh = { cd }, math.max(cd, now)
  for _, e in ipairs(list) do
    w[#w + 1] = e[1]
    w[#w + 1] = e[2]
    w[#w + 1] = e[3]
    fresh = math.max(fresh, e[2])
  end
  local len = #w + 1
  local at
  w[len], at = expiry(fresh, dl)
  put(key, struct.pack('<' .. string.rep('d', len), unpack(w)), at)
end
