-- Admits one call in every one of its scopes, or in none.
--
-- KEYS[1]          the set of reservations in flight (score: expiry in µs)
-- KEYS[2i], [2i+1] scope i: its hash of buckets, its set of calls in flight
-- ARGV[1] reservation id, ARGV[2] reservation TTL in µs, ARGV[3] number of scopes, then per scope:
--   concurrency cap (0: none), number of buckets, then per bucket:
--   field, rate (units per period × 1000), charge in µs, room in µs (the backlog allowed before
--   the charge: (burst − cost) units)
--
-- Returns {1, now} when admitted, else {0, wait in µs, 1 if a concurrency cap refused, blocked
-- scope indices (0-based)...}.
local now = now_us()
local id, ttl, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)

local a = 4
local wait, conc = 0, 0
local blocked = {}
local plan = {}
for i = 1, n do
  local cap, nb = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  local fields = { 'cd' }
  for b = 0, nb - 1 do
    local f = ARGV[a + 4 * b]
    fields[#fields + 1] = f
    fields[#fields + 1] = f .. '#m'
  end
  local vals = redis.call('HMGET', KEYS[2 * i], unpack(fields))
  local refused = false
  local cd = tonumber(vals[1]) or 0
  if cd > now then
    refused = true
    wait = math.max(wait, cd - now)
  end
  local tats = {}
  for b = 1, nb do
    local base = a + 4 * (b - 1)
    local rate, charge, room = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
    local tat = carried(tonumber(vals[2 * b]) or 0, tonumber(vals[2 * b + 1]), rate, now)
    local from = math.max(tat, now)
    local w = from - now - room
    if w > 0 then
      refused = true
      wait = math.max(wait, w)
    end
    tats[b] = from + charge
  end
  if cap > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2 * i + 1], '-inf', now)
    if redis.call('ZCARD', KEYS[2 * i + 1]) >= cap then
      refused = true
      conc = 1
    end
  end
  if refused then
    blocked[#blocked + 1] = i - 1
  end
  plan[i] = { a = a, nb = nb, cap = cap, cd = cd, tats = tats }
  a = a + 4 * nb
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
  if p.nb > 0 then
    local args = {}
    local keep = math.max(p.cd - now, 0)
    for b = 1, p.nb do
      local base = p.a + 4 * (b - 1)
      args[#args + 1] = ARGV[base]
      args[#args + 1] = int(p.tats[b])
      args[#args + 1] = ARGV[base] .. '#m'
      args[#args + 1] = ARGV[base + 1]
      keep = math.max(keep, p.tats[b] - now)
    end
    redis.call('HSET', KEYS[2 * i], unpack(args))
    redis.call('PEXPIRE', KEYS[2 * i], math.ceil(keep / 1000) + SLACK_MS)
  end
  if p.cap > 0 then
    redis.call('ZADD', KEYS[2 * i + 1], int(expires), id)
    extend(KEYS[2 * i + 1], ttl_ms)
  end
end
redis.call('ZADD', KEYS[1], int(expires), id)
extend(KEYS[1], ttl_ms)
return { 1, now }
