-- Settles one reservation: reconciles each bucket by the difference between the real cost and the
-- estimate, and gives back the concurrency slots. Idempotent: a marker key per reservation id
-- (kept twice the reservation TTL) makes a second settle of the same id change nothing.
--
-- KEYS[1] the reservation's marker; KEYS[2i], KEYS[2i+1]: scope i's state and set of calls in
-- flight.
-- ARGV[1] reservation id, ARGV[2] how long the marker lives in ms, ARGV[3] number of scopes,
-- then per scope:
--   1 if the scope holds a concurrency slot else 0, number of buckets, then per bucket:
--   field, rate, delta in µs (positive: charge the shortfall as debt; negative: refund)
--
-- Returns {1, now} when the reservation was settled now, {0, now} when it had been before.
local now = now_us()
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2]) then
  return { 0, now }
end
local a = 4
for i = 1, tonumber(ARGV[3]) do
  local slot, nb = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  if slot > 0 then
    local flight = KEYS[2 * i + 1]
    redis.call('ZREM', flight, ARGV[1])
    -- Reservations of processes that died, past their TTL: no longer counted, now forgotten.
    redis.call('ZREMRANGEBYSCORE', flight, '-inf', now)
  end
  if nb > 0 then
    local st = decode(redis.call('GET', KEYS[2 * i]))
    for b = 0, nb - 1 do
      local base = a + 3 * b
      local f = ARGV[base]
      local rate, delta = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
      local e = st.at[f]
      local tat = carried(e, rate, now)
      if delta > 0 then
        tat = math.max(tat, now) + delta
      else
        tat = math.max(tat + delta, now)
      end
      if e == nil then
        e = { f, 0, 0 }
        st.list[#st.list + 1] = e
      end
      e[2], e[3] = tat, rate
    end
    store(KEYS[2 * i], st.cd, st.list, now)
    a = a + 3 * nb
  end
end
return { 1, now }
