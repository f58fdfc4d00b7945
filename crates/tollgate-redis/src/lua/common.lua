-- Shared by every script of tollgate-redis (prepended to each one).
--
-- Time is whole microseconds since the Unix epoch from the server's own clock, so every client
-- agrees; Lua numbers are doubles, exact for integers up to 2^53 (about 285 years of µs).
--
-- Every redis.call and every Lua string costs: a scope's state is one binary string key (read
-- with one MGET for every scope of a call, written with one SET … PX that also sets its expiry),
-- and the numbers of a call come packed, one binary argument per scope. Both are little-endian
-- doubles (`struct`): turning numbers into decimal text and back is the slowest thing a script
-- can do. A scope's state is its cooldown end, then per bucket its id (dimension × 10^15 +
-- period in µs), its theoretical arrival time (TAT) in µs and the rate it was charged at (units
-- per period × 1000).
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Idle keys live this long after their state has become that of a fresh key.
local SLACK_MS = 1000

-- `struct` formats of `n` groups of `k` doubles after `head` doubles.
local function doubles(head, k, n)
  return '<' .. string.rep('d', head + k * n)
end

-- A scope's state: its cooldown end and {{id, tat, rate}...}. A missing key is a fresh scope.
local function decode(s)
  local list = {}
  if not s then
    return 0, list
  end
  local n = (#s - 8) / 24
  local v = { struct.unpack(doubles(1, 3, n), s) }
  for i = 0, n - 1 do
    list[i + 1] = { v[2 + 3 * i], v[3 + 3 * i], v[4 + 3 * i] }
  end
  return v[1], list
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

-- Writes a scope's state; it expires once its buckets are full again and its cooldown is over.
local function store(key, cd, list, now)
  local flat = { cd }
  local keep = math.max(cd - now, 0)
  for _, e in ipairs(list) do
    flat[#flat + 1] = e[1]
    flat[#flat + 1] = e[2]
    flat[#flat + 1] = e[3]
    keep = math.max(keep, e[2] - now)
  end
  local packed = struct.pack(doubles(1, 3, #list), unpack(flat))
  redis.call('SET', key, packed, 'PX', math.ceil(keep / 1000) + SLACK_MS)
end

-- The TAT of bucket `e` (charged at rate e[3]) carried over to rate `new`: the units it owes
-- stay owed. A bucket never charged (`e` nil) is full.
local function carried(e, new, now)
  if e == nil then
    return 0
  end
  local tat, old = e[2], e[3]
  if old == new or old == 0 or tat <= now then
    return tat
  end
  return now + math.ceil((tat - now) * old / new)
end
