-- Renews reservations still held (concurrency slots in their sets of calls in flight, spend
-- holds in the ledger's sets): each member's expiry moves to now + the TTL. Only members still
-- there are touched (ZADD XX): a reservation already forgotten stays forgotten. Every key is
-- kept at least the TTL and SLACK more (never shortened), so a key with no member to touch (a
-- budget's hash) outlives the reservations it counts.
--
-- KEYS: the keys. ARGV[1] the TTL in µs, then per key: how many members, the members.
-- Returns the number of members touched.
local now = now_us()
local ttl = tonumber(ARGV[1])
local expires = now + ttl
local ttl_ms = math.ceil((ttl + SLACK) / 1000)
local a, touched = 2, 0
for _, key in ipairs(KEYS) do
  local count = tonumber(ARGV[a])
  for j = a + 1, a + count do
    touched = touched + redis.call('ZADD', key, 'XX', 'CH', expires, ARGV[j])
  end
  a = a + count + 1
  local left = redis.call('PTTL', key)
  if left >= 0 and left < ttl_ms then
    redis.call('PEXPIRE', key, ttl_ms)
  end
end
return touched
