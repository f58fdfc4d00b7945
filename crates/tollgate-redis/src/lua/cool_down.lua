-- Pauses admissions in one scope for ARGV[1] µs from now (by the server's clock). Cooldowns
-- extend, they never add up.
--
-- KEYS[1] the scope's hash. Returns the end of the cooldown in µs.
local now = now_us()
local ends = now + tonumber(ARGV[1])
local cd = tonumber(redis.call('HGET', KEYS[1], 'cd')) or 0
if cd >= ends then
  return cd
end
redis.call('HSET', KEYS[1], 'cd', int(ends))
extend(KEYS[1], math.ceil((ends - now) / 1000) + SLACK_MS)
return ends
