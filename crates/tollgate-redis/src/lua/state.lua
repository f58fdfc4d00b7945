-- Reads one scope for statistics; changes nothing.
--
-- KEYS[1] the scope's hash, KEYS[2] its set of calls in flight. ARGV: the buckets' fields.
-- Returns {now, tat, rate, tat, rate, ..., calls in flight} (0 for a bucket never charged).
local now = now_us()
local out = { now }
for _, f in ipairs(ARGV) do
  local vals = redis.call('HMGET', KEYS[1], f, f .. '#m')
  out[#out + 1] = tonumber(vals[1]) or 0
  out[#out + 1] = tonumber(vals[2]) or 0
end
out[#out + 1] = redis.call('ZCOUNT', KEYS[2], now, '+inf')
return out
