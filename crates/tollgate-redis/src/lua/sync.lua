-- Lowers one bucket so that it holds at most what the provider reported left; never raises it.
--
-- KEYS[1] the scope's hash. ARGV: field, rate, backlog in µs that leaves the reported units
-- available ((burst − remaining) units, rounded up).
-- Returns the bucket's TAT in µs.
local now = now_us()
local f, rate, backlog = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local vals = redis.call('HMGET', KEYS[1], f, f .. '#m')
local tat = carried(tonumber(vals[1]) or 0, tonumber(vals[2]), rate, now)
local lowered = math.max(tat, now + backlog)
redis.call('HSET', KEYS[1], f, int(lowered), f .. '#m', ARGV[2])
extend(KEYS[1], math.ceil((lowered - now) / 1000) + SLACK_MS)
return lowered
