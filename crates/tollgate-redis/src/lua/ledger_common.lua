-- Shared by the spend ledger's scripts (after common.lua).

-- A budget's hash; a missing one is a fresh budget in window `ws`.
local function ledger_load(key, ws)
  local v = redis.call('HMGET', key, 'ws', 'spent', 'reserved', 'fired')
  return {
    ws = tonumber(v[1]) or ws,
    spent = tonumber(v[2]) or 0,
    reserved = tonumber(v[3]) or 0,
    fired = tonumber(v[4]) or 0,
  }
end

-- Writes a budget's hash; it expires after `keep` ms idle.
local function ledger_store(key, s, keep)
  local f = function(x)
    return string.format('%.0f', x)
  end
  redis.call('HSET', key, 'ws', f(s.ws), 'spent', f(s.spent), 'reserved', f(s.reserved),
    'fired', f(s.fired))
  redis.call('PEXPIRE', key, keep)
end
