-- Settles one reservation: reconciles each bucket by the difference between the real cost and the
-- estimate, and gives back the concurrency slots. Idempotent: a reservation settled before, or
-- reclaimed after its TTL, changes nothing.
--
-- KEYS as for acquire.lua.
-- ARGV[1] reservation id, ARGV[2] number of scopes, then per scope:
--   1 if the scope holds a concurrency slot else 0, number of buckets, then per bucket:
--   field, rate, delta in µs (positive: charge the shortfall as debt; negative: refund)
--
-- Returns {1, now} when the reservation was settled now, {0, now} when it was not in flight.
local now = now_us()
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return { 0, now }
end
local a = 3
for i = 1, tonumber(ARGV[2]) do
  local slot, nb = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  if slot > 0 then
    redis.call('ZREM', KEYS[2 * i + 1], ARGV[1])
  end
  if nb > 0 then
    local fields = {}
    for b = 0, nb - 1 do
      fields[#fields + 1] = ARGV[a + 3 * b]
      fields[#fields + 1] = ARGV[a + 3 * b] .. '#m'
    end
    local vals = redis.call('HMGET', KEYS[2 * i], unpack(fields))
    local args = {}
    local keep = 0
    for b = 1, nb do
      local base = a + 3 * (b - 1)
      local rate, delta = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
      local tat = carried(tonumber(vals[2 * b - 1]) or 0, tonumber(vals[2 * b]), rate, now)
      if delta > 0 then
        tat = math.max(tat, now) + delta
      else
        tat = math.max(tat + delta, now)
      end
      args[#args + 1] = ARGV[base]
      args[#args + 1] = int(tat)
      args[#args + 1] = ARGV[base] .. '#m'
      args[#args + 1] = ARGV[base + 1]
      keep = math.max(keep, tat - now)
    end
    redis.call('HSET', KEYS[2 * i], unpack(args))
    extend(KEYS[2 * i], math.ceil(keep / 1000) + SLACK_MS)
    a = a + 3 * nb
  end
end
return { 1, now }
