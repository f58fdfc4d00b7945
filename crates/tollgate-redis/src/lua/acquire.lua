-- Admits one call in every one of its scopes, or in none.
--
-- KEYS[2i-1], KEYS[2i]: scope i's state and its set of calls in flight (score: expiry in µs).
-- ARGV[1] reservation id, ARGV[2] reservation TTL in µs, ARGV[3] number of scopes, then per scope:
--   concurrency cap (0: none), number of buckets, then per bucket:
--   field, rate (units per period × 1000), charge in µs, room in µs (the backlog allowed before
--   the charge: (burst − cost) units)
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

local a = 4
local wait, conc = 0, 0
local blocked = {}
local plan = {}
for i = 1, n do
  local cap, nb = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  local st = decode(vals[i])
  local refused = false
  if st.cd > now then
    refused = true
    wait = math.max(wait, st.cd - now)
  end
  local list = {}
  for b = 0, nb - 1 do
    local base = a + 4 * b
    local f = ARGV[base]
    local rate, charge, room = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
    local from = math.max(carried(st.at[f], rate, now), now)
    local w = from - now - room
    if w > 0 then
      refused = true
      wait = math.max(wait, w)
    end
    list[b + 1] = { f, from + charge, rate }
  end
  a = a + 4 * nb
  if cap > 0 and redis.call('ZCOUNT', KEYS[2 * i], now, '+inf') >= cap then
    refused = true
    conc = 1
  end
  if refused then
    blocked[#blocked + 1] = i - 1
  end
  plan[i] = { cap = cap, cd = st.cd, list = list }
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
  if #p.list > 0 then
    store(KEYS[2 * i - 1], p.cd, p.list, now)
  end
  if p.cap > 0 then
    redis.call('ZADD', KEYS[2 * i], expires, id)
    redis.call('PEXPIRE', KEYS[2 * i], ttl_ms)
  end
end
return { 1, now }
