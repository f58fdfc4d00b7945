-- Spend ledger: reserves an estimate in every budget of a call, or in none (tollgate-core's
-- `reserve_budgets`: admitted iff spent + reserved + estimate <= cap in each budget's window).
--
-- A budget is a hash {ws = window start (Unix s), spent, reserved, fired = how many thresholds
-- have fired this window} and a sorted set of the reservations it holds: member
-- `<id>:<estimate>`, score its expiry (µs, server time). Money is integer micro-dollars, below
-- 2^53 (exact in doubles); numbers are written with %.0f, never with Lua's 14-digit tostring.
--
-- KEYS[1] the reservation id counter, KEYS[2] every live reservation (id -> expiry), then per
-- budget i: KEYS[2i+1] its hash, KEYS[2i+2] its reservations.
-- ARGV[1] estimate, ARGV[2] reservation TTL in µs, ARGV[3] how long KEYS[1..2] live idle (ms),
-- then per budget: its window start for the caller's clock, its cap, how long its keys live idle
-- (ms).
--
-- Returns {1, id, then per budget: ws, spent, reserved, fired} when reserved, or
-- {0, index of the refusing budget (0-based), then per budget: ws, spent, reserved, fired}.
local now = now_us()
local est, ttl, idle = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local n = (#KEYS - 2) / 2
-- Reservations past their TTL are forgotten: a late release of one changes nothing, a late
-- settle still counts its cost (ledger_settle.lua).
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local st = {}
for i = 1, n do
  local key, held = KEYS[2 * i + 1], KEYS[2 * i + 2]
  local ws = tonumber(ARGV[3 * i + 1])
  local s = ledger_load(key, ws)
  -- Lazy reclaim: the estimates of reservations past their TTL (their process died and stopped
  -- renewing them with touch.lua, or their reply was lost) come back.
  local gone = redis.call('ZRANGEBYSCORE', held, '-inf', now)
  for _, m in ipairs(gone) do
    s.reserved = math.max(s.reserved - tonumber(string.match(m, ':(%d+)$')), 0)
  end
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
  end
  -- A later window: spent and fired restart, reserved is carried. Never back.
  if ws > s.ws then
    s.ws, s.spent, s.fired = ws, 0, 0
  end
  st[i] = s
end
local refused = 0
for i = 1, n do
  local s = st[i]
  if s.spent + s.reserved + est > tonumber(ARGV[3 * i + 2]) then
    refused = i
    break
  end
end
local out = { 0, refused - 1 }
local member
if refused == 0 then
  local id = redis.call('INCR', KEYS[1])
  redis.call('PEXPIRE', KEYS[1], idle)
  local expiry = string.format('%.0f', now + ttl)
  redis.call('ZADD', KEYS[2], expiry, string.format('%d', id))
  redis.call('PEXPIRE', KEYS[2], idle)
  member = string.format('%d', id) .. ':' .. ARGV[1]
  out = { 1, id }
  for i = 1, n do
    st[i].reserved = st[i].reserved + est
    redis.call('ZADD', KEYS[2 * i + 2], expiry, member)
  end
end
for i = 1, n do
  local s = st[i]
  ledger_store(KEYS[2 * i + 1], s, ARGV[3 * i + 3])
  if member then
    redis.call('PEXPIRE', KEYS[2 * i + 2], ARGV[3 * i + 3])
  end
  out[#out + 1] = s.ws
  out[#out + 1] = s.spent
  out[#out + 1] = s.reserved
  out[#out + 1] = s.fired
end
return out
