-- Admits one call in every one of its scopes, or in none.
--
-- KEYS[2i-1], KEYS[2i]: scope i's state and its set of calls in flight (score: expiry in µs).
-- ARGV[1] reservation id, ARGV[2] reservation TTL in µs, ARGV[3] number of scopes n, then one
-- argument per scope, packed doubles: its concurrency cap (0: none), its number of buckets, then
-- per bucket: id, rate, charge in µs, room in µs (the backlog allowed before the charge:
-- (burst − cost) units).
--
-- Returns {1, now} when admitted, else {0, wait in µs, 1 if a concurrency cap refused, blocked
-- scope indices (0-based)...}.
local now = now_us()
local id, ttl, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local states = {}
for i = 1, n do
  states[i] = KEYS[2 * i - 1]
end
local vals = redis.call('MGET', unpack(states))

local wait, conc = 0, 0
local blocked = {}
local plan = {}
for i = 1, n do
  local arg = ARGV[3 + i]
  local nb = (#arg - 16) / 32
  local v = { struct.unpack(doubles(2, 4, nb), arg) }
  local cap = v[1]
  local cd, stored = decode(vals[i])
  local refused = false
  if cd > now then
    refused = true
    wait = math.max(wait, cd - now)
  end
  local list = {}
  for b = 0, nb - 1 do
    local bid, rate, charge, room = v[3 + 4 * b], v[4 + 4 * b], v[5 + 4 * b], v[6 + 4 * b]
    local from = math.max(carried(find(stored, bid, b + 1), rate, now), now)
    local w = from - now - room
    if w > 0 then
      refused = true
      wait = math.max(wait, w)
    end
    list[b + 1] = { bid, from + charge, rate }
  end
  if cap > 0 and redis.call('ZCOUNT', KEYS[2 * i], now, '+inf') >= cap then
    refused = true
    conc = 1
  end
  if refused then
    blocked[#blocked + 1] = i - 1
  end
  plan[i] = { cap, cd, list }
end

if #blocked > 0 then
  local out = { 0, wait, conc }
  for _, i in ipairs(blocked) do
    out[#out + 1] = i
  end
  return out
end

local expires = now + ttl
local ttl_ms = math.ceil(ttl / 1000) + SLACK_MS
for i = 1, n do
  local p = plan[i]
  if #p[3] > 0 then
    store(KEYS[2 * i - 1], p[2], p[3], now)
  end
  if p[1] > 0 then
    redis.call('ZADD', KEYS[2 * i], expires, id)
    redis.call('PEXPIRE', KEYS[2 * i], ttl_ms)
  end
end
return { 1, now }
