-- Shared by every script of tollgate-redis (prepended to each one).
--
-- Time is whole microseconds since the Unix epoch from the server's own clock, so every client
-- agrees; Lua numbers are doubles, exact for integers up to 2^53 (about 285 years of µs).
--
-- A scope's state is one string key, read with one GET (or one MGET for every scope of a call)
-- and written with one SET … PX, which also sets its expiry: every redis.call costs a few µs of
-- script overhead. The string is binary (`struct`, little-endian doubles: turning numbers into
-- decimal text is the slowest thing a script can do): the cooldown end, then per bucket its
-- field (`<dimension>/<period in ns>`, zero-terminated), its theoretical arrival time in µs and
-- the rate it was charged at (units per period × 1000).
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Idle keys live this long after their state has become that of a fresh key.
local SLACK_MS = 1000

-- The state in a scope's string: {cd = cooldown end, list = {{field, tat, rate}...}, at = field
-- -> entry}. A missing key is a fresh scope.
local function decode(s)
  local st = { cd = 0, list = {}, at = {} }
  if not s then
    return st
  end
  local pos
  st.cd, pos = struct.unpack('<d', s)
  local len = #s
  while pos <= len do
    local f, tat, rate
    f, tat, rate, pos = struct.unpack('<sdd', s, pos)
    local e = { f, tat, rate }
    st.list[#st.list + 1] = e
    st.at[f] = e
  end
  return st
end

-- Writes a scope's state; it expires once its buckets are full again and its cooldown is over.
local function store(key, cd, list, now)
  local parts = { struct.pack('<d', cd) }
  local keep = math.max(cd - now, 0)
  for i, e in ipairs(list) do
    parts[i + 1] = struct.pack('<sdd', e[1], e[2], e[3])
    keep = math.max(keep, e[2] - now)
  end
  redis.call('SET', key, table.concat(parts), 'PX', math.ceil(keep / 1000) + SLACK_MS)
end

-- The TAT of a bucket charged at rate `old`, carried over to rate `new`: the units it owes stay
-- owed. A bucket never charged (`e` nil) is full.
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
