-- Pauses admissions in one scope for ARGV[1] µs from now (by the server's clock). Cooldowns
-- extend, they never add up.
--
-- KEYS[1] the scope's state. Returns the end of the cooldown in µs.
local now = now_us()
local ends = now + tonumber(ARGV[1])
local cd, list, dl = decode(redis.call('GET', KEYS[1]))
if cd >= ends then
  return cd
end
store(KEYS[1], ends, list, dl, now)
return ends
