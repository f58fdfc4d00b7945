-- Settles one reservation: reconciles each bucket by the difference between the real cost and the
-- estimate, and gives back the concurrency slots. Idempotent: a marker key per reservation id
-- (kept twice the reservation TTL) makes a second settle of the same id change nothing.
--
-- KEYS[1] the reservation's marker, then the state of each of the n scopes, then the set of
-- calls in flight of each scope that holds a slot, in scope order (the admission's keys).
-- ARGV[1] reservation id, ARGV[2] how long the marker lives in ms, ARGV[3] packed doubles: n,
-- then per scope 1 if it holds a concurrency slot else 0, its number of buckets to change, then
-- per bucket: id, rate, delta in µs (positive: charge the shortfall as debt; negative: refund).
--
-- Returns {1, now} when the reservation was settled now, {0, now} when it had been before.
local now = now_us()
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2]) then
  return { 0, now }
end
local arg = ARGV[3]
local n, p = struct.unpack('<d', arg)
local f = n + 1
for i = 1, n do
  local slot, nb
  slot, nb, p = struct.unpack('<dd', arg, p)
  if slot > 0 then
    f = f + 1
    redis.call('ZREM', KEYS[f], ARGV[1])
    -- Reservations of processes that died, past their TTL: no longer counted, now forgotten.
    redis.call('ZREMRANGEBYSCORE', KEYS[f], '-inf', now)
  end
  if nb > 0 then
    local key = KEYS[1 + i]
    local cd, list, dl = decode(redis.call('GET', key))
    for b = 1, nb do
      local bid, rate, delta
      bid, rate, delta, p = struct.unpack('<ddd', arg, p)
      local e = find(list, bid, b)
      local tat = 0
      if e then
        tat = carried(e[2], e[3], rate, now)
      end
      if delta > 0 then
        tat = math.max(tat, now) + delta
      else
        tat = math.max(tat + delta, now)
      end
      if e == nil then
        e = { bid, 0, 0 }
        list[#list + 1] = e
      end
      e[2], e[3] = tat, rate
    end
    store(key, cd, list, dl, now)
  end
end
return { 1, now }
