-- Lowers one bucket so that it holds at most what the provider reported left; never raises it.
--
-- KEYS[1] the scope's state. ARGV: field, rate, backlog in µs that leaves the reported units
-- available ((burst − remaining) units, rounded up).
-- Returns the bucket's TAT in µs.
local now = now_us()
local f, rate, backlog = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local st = decode(redis.call('GET', KEYS[1]))
local e = st.at[f]
local lowered = math.max(carried(e, rate, now), now + backlog)
if e == nil then
  e = { f, 0, 0 }
  st.list[#st.list + 1] = e
end
e[2], e[3] = lowered, rate
store(KEYS[1], st.cd, st.list, now)
return lowered
