-- Keeps the concurrency slots of calls still running in their sets: each member's expiry moves to
-- now + the TTL. Only members still there are touched (ZADD XX): a slot already forgotten stays
-- forgotten.
--
-- KEYS: sets of calls in flight. ARGV[1] the TTL in µs, then per key: how many ids, the ids.
-- Returns the number of slots touched.
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
  redis.call('PEXPIRE', key, ttl_ms)
end
return touched
