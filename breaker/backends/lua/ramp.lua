-- Slow start: the fleet-wide limit on calls in flight while a recovered model warms up.
-- KEYS[7] ramp hash (epoch, started, first, period)   KEYS[8] slots hash (token -> since)
-- ARGV[7] action: 'begin' (ARGV[8] the CLOSED epoch the ramp belongs to), 'acquire' or
-- 'release' (ARGV[8] the caller's slot token), 'status'.
-- ARGV[9] the slow_start default, for a stored policy written before the field existed.
-- The limit starts at permitted_calls_in_half_open and doubles every fifth of slow_start;
-- the ramp ends when slow_start has elapsed, or as soon as the breaker leaves that CLOSED
-- epoch (a trip during the ramp ends it: the breaker is in charge again).
local K_RAMP, K_SLOTS = KEYS[7], KEYS[8]
local STEPS = 5
local action, arg = ARGV[7], ARGV[8]
local now = now_ms()
local policy = load_policy()
local s = load_state(now, false)
local period = policy.slow_start
if period == nil then
  period = tonumber(ARGV[9])
end
local ramp = hash_table(redis.call('HGETALL', K_RAMP))
for _, k in ipairs({'epoch', 'started', 'first', 'period'}) do
  ramp[k] = tonumber(ramp[k])
end

local function active()
  return s ~= nil and ramp.epoch ~= nil and ramp.epoch == s.epoch and s.state == 'closed'
    and now < ramp.started + ramp.period
end

local function limit()
  local step = math.floor((now - ramp.started) / (ramp.period / STEPS))
  return ramp.first * 2 ^ step
end

-- Slots of calls whose worker died are given back after max_wait_in_half_open.
local function reclaim()
  local flat = redis.call('HGETALL', K_SLOTS)
  local lapse = policy.max_wait_in_half_open * 1000
  for i = 1, #flat, 2 do
    if now - tonumber(flat[i + 1]) >= lapse then
      redis.call('HDEL', K_SLOTS, flat[i])
    end
  end
end

local function status(extra)
  local r = {active = false, now_ms = now, epoch = ramp.epoch or cjson.null,
             started_ms = ramp.started or cjson.null, in_flight = 0, limit = cjson.null,
             ends_ms = cjson.null}
  if ramp.started ~= nil then
    r.ends_ms = ramp.started + ramp.period
  end
  if active() then
    r.active = true
    r.limit = limit()
    r.in_flight = redis.call('HLEN', K_SLOTS)
  end
  for k, v in pairs(extra) do
    r[k] = v
  end
  return cjson.encode(r)
end

if action == 'begin' then
  local epoch = tonumber(arg)
  if s ~= nil and s.state == 'closed' and s.epoch == epoch and period > 0
      and (ramp.epoch == nil or ramp.epoch < epoch) and now < s.changed_at + period * 1000 then
    ramp = {epoch = epoch, started = s.changed_at, first = policy.permitted_calls_in_half_open,
            period = math.floor(period * 1000 + 0.5)}
    redis.call('DEL', K_SLOTS)
    redis.call('HSET', K_RAMP, 'epoch', ramp.epoch, 'started', ramp.started, 'first', ramp.first,
      'period', ramp.period)
    return status({begun = true})
  end
  return status({begun = false})
end

if action == 'acquire' then
  if not active() then
    if redis.call('EXISTS', K_SLOTS) == 1 then
      redis.call('DEL', K_SLOTS)
    end
    return status({granted = true})
  end
  reclaim()
  if redis.call('HLEN', K_SLOTS) < limit() then
    redis.call('HSET', K_SLOTS, arg, now)
    return status({granted = true, slot = true})
  end
  return status({granted = false})
end

if action == 'release' then
  redis.call('HDEL', K_SLOTS, arg)
  return status({})
end

return status({})
