-- Admits one call in every one of its scopes, or in none.
--
-- KEYS: the state of each of the n scopes, then the set of calls in flight (score: expiry in µs)
-- of each scope with a concurrency cap, in scope order. A scope without a cap touches only its
-- state, and a scope without limits nothing.
-- ARGV[1] reservation id, ARGV[2] reservation TTL in µs, ARGV[3] packed doubles: n, then per
-- scope its concurrency cap (0: none), its number of buckets, then per bucket: id, rate, charge
-- in µs, room in µs (the backlog allowed before the charge: (burst − cost) units).
--
-- Returns {1, now} when admitted, else {0, wait in µs, 1 if a concurrency cap refused, blocked
-- scope indices (0-based)...}.
local now = now_us()
local unpk = struct.unpack
local arg = ARGV[3]
local n, p = unpk('<d', arg)
local vals = redis.call('MGET', unpack(KEYS, 1, n))

local wait, conc, out = 0, 0, nil
-- Per scope with buckets, three slots: its new state, the state's length and the expiry to set
-- (`expiry`). Tables are built with room for four scopes, and states for three buckets: a Lua
-- table that grows is rebuilt at each power of two, which costs more than the rest of a bucket.
local plan = { false, false, false, false, false, false, false, false, false, false, false, false }
local f = n
for i = 1, n do
  local cap, nb
  cap, nb, p = unpk('<dd', arg, p)
  local s = vals[i]
  local cd, e, dl = state(s)
  local refused, last = false, now
  if cd > now then
    refused, last = true, cd
    if cd - now > wait then
      wait = cd - now
    end
  end
  local w, q = { cd, false, false, false, false, false, false, false, false, false, false }, 9
  for b = 1, nb do
    local bid, rate, charge, room
    bid, rate, charge, room, p = unpk('<dddd', arg, p)
    local tat, old = bucket(s, e, q, bid)
    q = q + 24
    if old ~= rate then
      tat = carried(tat, old, rate, now)
    end
    if tat < now then
      tat = now
    end
    local over = tat - now - room
    if over > 0 then
      refused = true
      if over > wait then
        wait = over
      end
    end
    tat = tat + charge
    w[3 * b - 1], w[3 * b], w[3 * b + 1] = bid, tat, rate
    if tat > last then
      last = tat
    end
  end
  if cap > 0 then
    f = f + 1
    if redis.call('ZCOUNT', KEYS[f], now, '+inf') >= cap then
      refused = true
      conc = 1
    end
  end
  if refused then
    out = out or { 0, 0, 0 }
    out[#out + 1] = i - 1
  end
  if nb > 0 then
    local len, at = 3 * nb + 2, nil
    w[len], at = expiry(last, dl)
    plan[3 * i - 2], plan[3 * i - 1], plan[3 * i] = w, len, at
  end
end

if out then
  out[2], out[3] = wait, conc
  return out
end

-- (The scopes of a call usually have as many buckets: one `struct` format serves them all.)
local fmt, flen = nil, 0
for i = 1, n do
  local w = plan[3 * i - 2]
  if w then
    local len = plan[3 * i - 1]
    if len ~= flen then
      fmt, flen = '<' .. string.rep('d', len), len
    end
    put(KEYS[i], struct.pack(fmt, unpack(w, 1, len)), plan[3 * i])
  end
end
if f > n then
  local ttl = tonumber(ARGV[2])
  local expires, ttl_ms = now + ttl, math.ceil((ttl + SLACK) / 1000)
  for k = n + 1, f do
    redis.call('ZADD', KEYS[k], expires, ARGV[1])
    redis.call('PEXPIRE', KEYS[k], ttl_ms)
  end
end
return { 1, now }
