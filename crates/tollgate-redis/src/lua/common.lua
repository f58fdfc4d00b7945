-- Shared by every script of tollgate-redis (prepended to each one).
--
-- Time is whole microseconds since the Unix epoch from the server's own clock, so every client
-- agrees; Lua numbers are doubles, exact for integers up to 2^53 (about 285 years of µs).
--
-- A scope's state is one string key, read with one GET (or one MGET for every scope of a call)
-- and written with one SET … PX, which also sets its expiry: every redis.call costs a few µs of
-- script overhead, far more than the arithmetic. The string is
--   <cooldown end>|<field>|<tat>|<rate>|<field>|<tat>|<rate>…
-- with one field per bucket (`<dimension>/<period in ns>`), its theoretical arrival time in µs and
-- the rate it was charged at (units per period × 1000).
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- An integer as a decimal string: Redis turns Lua numbers into strings with 14 significant
-- digits, which would round a time in µs.
local function int(x)
  return string.format('%.0f', x)
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
  local i, e = 0, nil
  for tok in string.gmatch(s, '[^|]+') do
    if i == 0 then
      st.cd = tonumber(tok)
    else
      local k = (i - 1) % 3
      if k == 0 then
        e = { tok, 0, 0 }
        st.list[#st.list + 1] = e
        st.at[tok] = e
      elseif k == 1 then
        e[2] = tonumber(tok)
      else
        e[3] = tonumber(tok)
      end
    end
    i = i + 1
  end
  return st
end

-- Writes a scope's state; it expires once its buckets are full again and its cooldown is over.
local function store(key, cd, list, now)
  local parts = { int(cd) }
  local keep = math.max(cd - now, 0)
  for _, e in ipairs(list) do
    parts[#parts + 1] = e[1]
    parts[#parts + 1] = int(e[2])
    parts[#parts + 1] = int(e[3])
    keep = math.max(keep, e[2] - now)
  end
  redis.call('SET', key, table.concat(parts, '|'), 'PX', math.ceil(keep / 1000) + SLACK_MS)
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
