-- Lowers one bucket so that it holds at most what the provider reported left; never raises it.
--
-- KEYS[1] the scope's state. ARGV: bucket id, rate, backlog in µs that leaves the reported units
-- available ((burst − remaining) units, rounded up).
-- Returns the bucket's TAT in µs.
local now = now_us()
local bid, rate, backlog = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cd, list, dl = decode(redis.call('GET', KEYS[1]))
local e = find(list, bid, 1)
local tat = 0
if e then
  tat = carried(e[2], e[3], rate, now)
end
local lowered = math.max(tat, now + backlog)
if e == nil then
  e = { bid, 0, 0 }
  list[#list + 1] = e
end
e[2], e[3] = lowered, rate
store(KEYS[1], cd, list, dl, now)
return lowered
