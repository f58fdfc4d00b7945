-- Records a cut of a scope's adaptive rate unless a later one is recorded already.
--
-- KEYS[1] the scope's cut (a hash: at, w). ARGV[1] when the rate was cut (Unix ms), ARGV[2] the
-- rate before the cut, ARGV[3] how long the record lives (ms). Returns 1 if recorded, else 0.
local at = tonumber(ARGV[1])
local known = tonumber(redis.call('HGET', KEYS[1], 'at'))
if known and known >= at then
  return 0
end
redis.call('HSET', KEYS[1], 'at', ARGV[1], 'w', ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
