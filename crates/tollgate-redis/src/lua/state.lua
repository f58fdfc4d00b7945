-- Reads one scope for statistics; changes nothing.
--
-- KEYS[1] the scope's state, KEYS[2] its set of calls in flight. ARGV: the buckets' fields.
-- Returns {now, tat, rate, tat, rate, ..., calls in flight} (0, 0 for a bucket never charged).
local now = now_us()
local st = decode(redis.call('GET', KEYS[1]))
local out = { now }
for _, f in ipairs(ARGV) do
  local e = st.at[f]
  out[#out + 1] = e and e[2] or 0
  out[#out + 1] = e and e[3] or 0
end
out[#out + 1] = redis.call('ZCOUNT', KEYS[2], now, '+inf')
return out
