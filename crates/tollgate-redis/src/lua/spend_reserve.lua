-- Reserves an estimated cost in every budget of a call, or in none (the spend ledger).
--
-- KEYS[i]: budget i's ledger, a hash: w (window start, Unix s), s (spent), r (reserved),
-- k (thresholds already crossed in the window; they ascend, so a count is enough). Money is in
-- micro-dollars.
-- ARGV[1] estimate, ARGV[2] number of budgets n, ARGV[3] seconds a ledger outlives its window
-- (calls in flight settle into it), then per budget, packed doubles: cap, window start, next
-- reset (Unix s) at the caller's idea of the server's time.
--
-- Returns {1, now} when reserved; {0, i, spent, reserved, now} when budget i (0-based) refuses;
-- {-1, now} when the windows given are not those of the server's time `now` (the caller
-- computes them again from it).
local now = tonumber(redis.call('TIME')[1])
local est, n, keep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rows = {}
for i = 1, n do
  local cap, ws, nr = struct.unpack('<ddd', ARGV[3 + i])
  if now < ws or now >= nr then
    return { -1, now }
  end
  local h = redis.call('HMGET', KEYS[i], 'w', 's', 'r', 'k')
  local w, s, r, k = tonumber(h[1]) or 0, tonumber(h[2]) or 0, tonumber(h[3]) or 0, tonumber(h[4]) or 0
  if ws > w then
    -- A new window: nothing spent yet, no threshold crossed; calls in flight stay reserved.
    w, s, k = ws, 0, 0
  end
  if s + r + est > cap then
    return { 0, i - 1, s, r, now }
  end
  rows[i] = { w, s, r + est, k, nr }
end
for i = 1, n do
  local x = rows[i]
  redis.call('HSET', KEYS[i], 'w', x[1], 's', x[2], 'r', x[3], 'k', x[4])
  redis.call('EXPIREAT', KEYS[i], x[5] + keep)
end
return { 1, now }
