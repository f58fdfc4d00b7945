-- Spend ledger: settles (or releases) one reservation in every budget it holds. Idempotent: it
-- acts only while the reservation is live in KEYS[1], and removes it, so a repeated settle, or
-- one after the reservation was reclaimed, changes nothing.
--
-- KEYS[1] every live reservation, then per budget i: KEYS[2i] its hash, KEYS[2i+1] its
-- reservations (see ledger_reserve.lua).
-- ARGV[1] reservation id, ARGV[2] its estimate, ARGV[3] the real cost ('' to release), then per
-- budget: its window start at the settle for the caller's clock, how long its keys live idle
-- (ms), number of thresholds, the thresholds (ascending).
--
-- Settle: reserved -= estimate, then in the settle's window (rolled as in the reserve) spent +=
-- cost; the thresholds now reached that had not fired in this window fire, once across every
-- process: `fired` counts them (thresholds ascend and spend only grows within a window, so the
-- fired ones are always the first `fired`).
--
-- Returns {0} when the reservation was not live, else {1, then per budget: ws, spent before,
-- fired before, spent after, reserved after}.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return { 0 }
end
local member = ARGV[1] .. ':' .. ARGV[2]
local est, cost = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = { 1 }
local a = 4
for i = 1, (#KEYS - 1) / 2 do
  local key, held = KEYS[2 * i], KEYS[2 * i + 1]
  local ws, keep, nt = tonumber(ARGV[a]), ARGV[a + 1], tonumber(ARGV[a + 2])
  local s = ledger_load(key, ws)
  -- Not there when this budget already reclaimed it: its estimate came back then.
  if redis.call('ZREM', held, member) == 1 then
    s.reserved = math.max(s.reserved - est, 0)
  end
  local before, fired = s.spent, s.fired
  if cost then
    if ws > s.ws then
      s.ws, s.spent, s.fired = ws, 0, 0
    end
    before, fired = s.spent, s.fired
    s.spent = s.spent + cost
    while s.fired < nt and tonumber(ARGV[a + 3 + s.fired]) <= s.spent do
      s.fired = s.fired + 1
    end
  end
  ledger_store(key, s, keep)
  out[#out + 1] = s.ws
  out[#out + 1] = before
  out[#out + 1] = fired
  out[#out + 1] = s.spent
  out[#out + 1] = s.reserved
  a = a + 3 + nt
end
return out
