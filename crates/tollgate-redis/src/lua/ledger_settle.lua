-- Spend ledger: settles (or releases) one reservation in every budget it holds. Idempotent: a
-- settle leaves a marker (KEYS[2]) holding its token and its outcome; the same settle run again
-- (its first reply was lost) returns that outcome and changes nothing, and any other settle of
-- the reservation changes nothing and returns {0}. A release acts only while the reservation is
-- live in KEYS[1]. A settle of a reservation that was reclaimed meanwhile (its process stopped
-- renewing it) still counts its cost; its estimate came back at the reclaim.
--
-- KEYS[1] every live reservation, KEYS[2] the settled marker of this reservation, then per budget
-- i: KEYS[2i+1] its hash, KEYS[2i+2] its reservations (see ledger_reserve.lua).
-- ARGV[1] reservation id, ARGV[2] its estimate, ARGV[3] the real cost ('' to release), ARGV[4]
-- how long the marker lives (ms), ARGV[5] the settle's token (the same in each of its retries),
-- then per budget: its window start at the settle for the caller's clock, how long its keys live
-- idle (ms), number of thresholds, the thresholds (ascending).
--
-- Settle: reserved -= estimate, then in the settle's window (rolled as in the reserve) spent +=
-- cost; the thresholds now reached that had not fired in this window fire, once across every
-- process: `fired` counts them (thresholds ascend and spend only grows within a window, so the
-- fired ones are always the first `fired`).
--
-- Returns {0} when the reservation was not live (or settled by another settle), else {1, then
-- per budget: ws, spent before, fired before, spent after, reserved after}.
local est, cost, token = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[5]
if cost then
  local marker = redis.call('GET', KEYS[2])
  if marker then
    local sep = string.find(marker, '|', 1, true)
    if not sep or string.sub(marker, 1, sep - 1) ~= token then
      return { 0 }
    end
    local out = {}
    for v in string.gmatch(string.sub(marker, sep + 1), '[^,]+') do
      out[#out + 1] = tonumber(v)
    end
    return out
  end
end
local live = redis.call('ZREM', KEYS[1], ARGV[1]) == 1
if not live and not cost then
  return { 0 }
end
local member = ARGV[1] .. ':' .. ARGV[2]
local out = { 1 }
local a = 6
for i = 1, (#KEYS - 2) / 2 do
  local key, held = KEYS[2 * i + 1], KEYS[2 * i + 2]
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
if cost then
  local text = {}
  for i, v in ipairs(out) do
    text[i] = string.format('%.0f', v)
  end
  redis.call('SET', KEYS[2], token .. '|' .. table.concat(text, ','), 'PX', tonumber(ARGV[4]))
end
return out
