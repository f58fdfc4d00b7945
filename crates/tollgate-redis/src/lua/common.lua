-- Shared by every script of tollgate-redis (prepended to each one).
-- Time is whole microseconds since the Unix epoch from the server's own clock, so every client
-- agrees; Lua numbers are doubles, exact for integers up to 2^53 (about 285 years of µs).
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- An integer as a decimal string: Redis turns Lua numbers into strings with 14 significant
-- digits, which would round a time in µs.
local function int(x)
  return string.format('%.0f', x)
end

-- The TAT of a bucket charged at rate `old` (units per period, in thousandths), carried over to
-- rate `new`: the units it owes stay owed.
local function carried(tat, old, new, now)
  if old == nil or old == new or tat <= now then
    return tat
  end
  return now + math.ceil((tat - now) * old / new)
end

-- Extends the expiry of `key` to at least `ms` milliseconds from now, never shortens it.
local function extend(key, ms)
  local left = redis.call('PTTL', key)
  if left < ms then
    redis.call('PEXPIRE', key, ms)
  end
end

-- Idle keys live this long after their state has become that of a fresh key.
local SLACK_MS = 1000
