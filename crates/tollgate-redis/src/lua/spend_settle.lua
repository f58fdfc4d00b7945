-- Settles (or releases) a reservation of spend_reserve.lua in every budget of the call, once:
-- a marker key per reservation id makes a repeated settle change nothing. Spend counts in the
-- window where the call settles.
--
-- KEYS[1] the reservation's marker; KEYS[1 + i] budget i's ledger (see spend_reserve.lua).
-- ARGV[1] reservation id, ARGV[2] how long the marker lives in ms, ARGV[3] the estimate
-- reserved, ARGV[4] the real cost (-1: release, the call never happened), ARGV[5] number of
-- budgets n, ARGV[6] seconds a ledger outlives its window, then per budget, packed doubles:
-- window start, next reset, then its alert thresholds (ascending).
--
-- Returns {1, now, then per threshold crossed: budget (0-based), threshold index, spent};
-- {0, now} when settled before; {-1, now} when the windows given are not those of `now`.
local now = tonumber(redis.call('TIME')[1])
local est, actual = tonumber(ARGV[3]), tonumber(ARGV[4])
local n, keep = tonumber(ARGV[5]), tonumber(ARGV[6])
local bounds = {}
for i = 1, n do
  local arg = ARGV[6 + i]
  local v = { struct.unpack('<' .. string.rep('d', #arg / 8), arg) }
  if now < v[1] or now >= v[2] then
    return { -1, now }
  end
  bounds[i] = v
end
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2]) then
  return { 0, now }
end
local out = { 1, now }
for i = 1, n do
  local v = bounds[i]
  local key = KEYS[1 + i]
  local h = redis.call('HMGET', key, 'w', 's', 'r', 'k')
  local w, s, r, k = tonumber(h[1]) or 0, tonumber(h[2]) or 0, tonumber(h[3]) or 0, tonumber(h[4]) or 0
  if v[1] > w then
    w, s, k = v[1], 0, 0
  end
  r = math.max(r - est, 0)
  if actual >= 0 then
    s = s + actual
    -- v = {start, reset, thresholds..., next position}
    local m = #v - 3
    while k < m and s >= v[3 + k] do
      out[#out + 1] = i - 1
      out[#out + 1] = k
      out[#out + 1] = s
      k = k + 1
    end
  end
  redis.call('HSET', key, 'w', w, 's', s, 'r', r, 'k', k)
  redis.call('EXPIREAT', key, v[2] + keep)
end
return out
