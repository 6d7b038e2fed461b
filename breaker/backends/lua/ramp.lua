-- Slow start: the fleet-wide limit on calls in flight while a recovered model warms up.
-- KEYS[8] ramp hash (armed: the HALF_OPEN epoch whose recovery ramps; started: the first
--         slot's time, ms)
-- KEYS[9] slots hash (token -> since, ms)
-- ARGV[7] action: 'arm' (ARGV[8] the current HALF_OPEN epoch), 'acquire' or 'release'
-- (ARGV[8] the caller's slot token), 'status'.
-- ARGV[9] the slow_start default, for a stored policy written before the field existed.
-- A ramp runs in the CLOSED epoch that directly follows an armed HALF_OPEN one (the probes
-- closed it), for slow_start seconds from the first slot taken in it (workers need a moment
-- to resume: a ramp that grew while nobody called would protect nothing), or from
-- slow_start after the close if nobody called by then. The limit starts at
-- permitted_calls_in_half_open and doubles every fifth of slow_start. Any transition ends it
-- (a trip during the ramp: the breaker is in charge again).
local K_RAMP, K_SLOTS = KEYS[8], KEYS[9]
local STEPS = 5
local action, arg = ARGV[7], ARGV[8]
local now = now_ms()
local policy = load_policy()
local s = load_state(now, false)
local period = policy.slow_start
if period == nil then
  period = tonumber(ARGV[9])
end
period = math.floor(period * 1000 + 0.5)
local ramp = redis.call('HMGET', K_RAMP, 'armed', 'started')
local armed, started = tonumber(ramp[1]), tonumber(ramp[2])

local function ramping()
  return s ~= nil and armed ~= nil and s.state == 'closed' and s.epoch == armed + 1
end

-- When the ramp began (or begins): the first slot, at the latest slow_start after the close.
local function began()
  local latest = s.changed_at + period
  if started ~= nil and started < latest then
    return started
  end
  return latest
end

local function active()
  return ramping() and period > 0 and now < began() + period
end

local function limit()
  local step = math.max(0, math.floor((now - began()) * STEPS / period))
  return policy.permitted_calls_in_half_open * 2 ^ step
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
  local r = {active = false, now_ms = now, epoch = cjson.null, in_flight = 0, limit = cjson.null,
             started_ms = cjson.null, ends_ms = cjson.null}
  if s ~= nil then
    r.epoch = s.epoch
  end
  if ramping() then
    r.started_ms = began()
    r.ends_ms = began() + period
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

if action == 'arm' then
  local epoch = tonumber(arg)
  if s ~= nil and s.state == 'half_open' and s.epoch == epoch and (armed == nil or armed < epoch) then
    armed = epoch
    redis.call('HSET', K_RAMP, 'armed', epoch)
    redis.call('HDEL', K_RAMP, 'started')
    redis.call('DEL', K_SLOTS)
    return status({armed = true})
  end
  return status({armed = false})
end

if action == 'acquire' then
  if not active() then
    if redis.call('EXISTS', K_SLOTS) == 1 then
      redis.call('DEL', K_SLOTS)
    end
    return status({granted = true})
  end
  if started == nil then
    started = now
    redis.call('HSET', K_RAMP, 'started', now)
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
end
return status({})
