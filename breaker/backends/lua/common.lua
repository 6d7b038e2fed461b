-- Shared by every breaker script: RedisBackend prepends it to each script when loading.
-- The rules are the ones of breaker/machine.py; keep the two in step.
--
-- KEYS[1] state hash      KEYS[2] window hash    KEYS[3] permits hash
-- KEYS[4] policy hash     KEYS[5] names set      KEYS[6] events stream
-- KEYS[7] applied record batches (sorted set: batch id -> store time)
-- ARGV[1] breaker name    ARGV[2] who (host:pid) ARGV[3] fixed time in ms, '' to use TIME
-- ARGV[4] events channel  ARGV[5] stream maxlen  ARGV[6] caller's default policy (JSON)
-- ARGV[7..] the script's own arguments

local K_STATE, K_WINDOW, K_PERMITS, K_POLICY, K_NAMES, K_STREAM, K_APPLIED =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local NAME, WHO, CHANNEL = ARGV[1], ARGV[2], ARGV[4]
local STREAM_MAXLEN = tonumber(ARGV[5])

-- POLICY_NUMBERS, OPTIONAL_NUMBERS (numbers a policy may lack: written by a version
-- without them; converted and checked when present, nil otherwise, and the script that reads
-- one has its default), policy_bounds() and POLICY_BOUNDS_ID are generated from BreakerPolicy's
-- fields (breaker/backends/policy_lua.py) and precede this file.
-- reference_megapixels: the caller scales durations by it before recording
-- (BreakerPolicy.size_factor); the scripts only check it.
local STATE_NUMBERS = {
  'epoch', 'incarnation', 'changed_at', 'open_until', 'consecutive_trips', 'permit_seq',
  'probe_calls', 'probe_failures', 'probe_slow', 'streak',
}

-- The store's clock, never the caller's: hosts with skewed clocks still agree.
local function now_ms()
  if ARGV[3] ~= '' then
    return tonumber(ARGV[3])
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function hash_table(flat)
  local t = {}
  for i = 1, #flat, 2 do
    t[flat[i]] = flat[i + 1]
  end
  return t
end

-- Every policy number is checked against BreakerPolicy's bounds: a stored policy written by
-- hand (or by an older or newer fusebox) is checked here too, so that a missing or absurd
-- field can never make a script fail halfway (a HALF_OPEN breaker that never decides).
-- The number `raw` converted, or nil when it breaks the field's bounds.
local function checked_number(k, raw)
  local v = tonumber(raw)
  local b = policy_bounds()[k]
  if v == nil or v ~= v or v < b[1] or v > b[2] or (b[3] and v == b[1]) or (b[4] and v == b[2])
      or (b[5] and v % 1 ~= 0) then
    return nil
  end
  return v
end

-- The policy `p` with its numbers converted, or nil and the reason it is unusable.
local function checked_policy(p)
  if type(p) ~= 'table' then
    return nil, 'not a policy'
  end
  for _, k in ipairs(POLICY_NUMBERS) do
    if tonumber(p[k]) == nil then
      return nil, 'missing or non-numeric ' .. k
    end
    local v = checked_number(k, p[k])
    if v == nil then
      return nil, k .. ' out of range: ' .. tostring(p[k])
    end
    p[k] = v
  end
  for _, k in ipairs(OPTIONAL_NUMBERS) do
    if p[k] ~= nil and p[k] ~= '' and p[k] ~= cjson.null then
      local v = checked_number(k, p[k])
      if v == nil then
        return nil, k .. ' out of range: ' .. tostring(p[k])
      end
      p[k] = v
    else
      p[k] = nil
    end
  end
  if p.max_wait_in_open < p.wait_in_open then
    return nil, 'max_wait_in_open < wait_in_open'
  end
  if p.max_wait_in_half_open <= p.call_timeout then
    return nil, 'max_wait_in_half_open <= call_timeout'
  end
  return p, nil
end

-- The effective policy: an operator's stored policy when it is usable, else the fleet's
-- default (the configured policy of the process that created the breaker, kept in the
-- state hash so that every process judges alike during a rolling deploy), else the
-- caller's. Returns the policy, whether an operator's policy is in force, and the reason
-- a stored policy was refused (nil when none was).
local POLICY_PROBLEM = nil

-- The state hash's fields a script reads, fetched once per script call (HMGET: the
-- lifetime totals and the policy JSON stay in Redis unless asked for).
-- FLEET_CHECKED names the field holding the fleet default exactly as it was last checked
-- against these bounds: while it equals `default_policy`, the check is not run again (a
-- version with other bounds uses another field name, an older version that writes
-- `default_policy` without it makes the two differ).
local FLEET_CHECKED = 'default_policy_checked:' .. POLICY_BOUNDS_ID
local STATE_FIELDS = {'state', 'default_policy', FLEET_CHECKED}
for _, k in ipairs(STATE_NUMBERS) do
  STATE_FIELDS[#STATE_FIELDS + 1] = k
end
local STATE_ROW = nil

local function state_row()
  if STATE_ROW == nil then
    local values = redis.call('HMGET', K_STATE, unpack(STATE_FIELDS))
    STATE_ROW = {}
    for i, k in ipairs(STATE_FIELDS) do
      STATE_ROW[k] = values[i] or nil
    end
  end
  return STATE_ROW
end

-- Stores `raw` (a process's configured policy, checked by pydantic) as the fleet default.
local function set_fleet_policy(raw)
  local row = state_row()
  local p = checked_policy(cjson.decode(raw))
  if p then
    redis.call('HSET', K_STATE, 'default_policy', raw, FLEET_CHECKED, raw)
    row[FLEET_CHECKED] = raw
  else
    redis.call('HSET', K_STATE, 'default_policy', raw)
    redis.call('HDEL', K_STATE, FLEET_CHECKED)
    row[FLEET_CHECKED] = nil
  end
  row.default_policy = raw
end

-- Optional numbers of a policy already checked: JSON null means absent.
local function unchecked_optionals(p)
  for _, k in ipairs(OPTIONAL_NUMBERS) do
    if p[k] == cjson.null then
      p[k] = nil
    end
  end
  return p
end

local function load_policy()
  local problem = nil
  local stored = redis.call('HGETALL', K_POLICY)
  if #stored > 0 then
    local p, why = checked_policy(hash_table(stored))
    if p then
      return p, true, nil
    end
    problem = 'stored policy refused (' .. why .. '); using the fleet default'
  end
  POLICY_PROBLEM = problem
  local row = state_row()
  local fleet = row.default_policy
  if fleet then
    local ok, decoded = pcall(cjson.decode, fleet)
    local p = nil
    if ok and fleet == row[FLEET_CHECKED] then
      p = unchecked_optionals(decoded)
    elseif ok then
      p = checked_policy(decoded)
    end
    if p then
      return p, false, problem
    end
  end
  local p = checked_policy(cjson.decode(ARGV[6]))
  POLICY_PROBLEM = problem
  return p, false, problem
end

-- The breaker's state hash as a table; a breaker seen for the first time starts CLOSED,
-- unless `create` is false (read-only callers), in which case nil is returned.
local function load_state(now, create)
  local row = state_row()
  if row.state == nil then
    if not create then
      return nil
    end
    local s = {state = 'closed', epoch = 0, incarnation = now, changed_at = now, open_until = 0,
         consecutive_trips = 0, permit_seq = 0, probe_calls = 0, probe_failures = 0, probe_slow = 0,
         streak = 0}
    redis.call('HSET', K_STATE, 'state', 'closed', 'epoch', 0, 'incarnation', now, 'changed_at', now,
      'open_until', 0, 'consecutive_trips', 0, 'permit_seq', 0, 'probe_calls', 0,
      'probe_failures', 0, 'probe_slow', 0, 'streak', 0)
    set_fleet_policy(ARGV[6])
    redis.call('SADD', K_NAMES, NAME)
    row.state = 'closed'
    return s
  end
  if create and row.default_policy == nil then
    -- A breaker created by an older fusebox: adopt this caller's policy as the fleet's.
    set_fleet_policy(ARGV[6])
  end
  local s = {state = row.state}
  for _, k in ipairs(STATE_NUMBERS) do
    s[k] = tonumber(row[k]) or 0
  end
  return s
end

-- Ids of applied writes (record batches, hand-backs) are remembered for a time, not for a
-- count: a process whose write timed out asks about it within the horizon however busy the
-- fleet was meanwhile (breaker/tally.py IDEMPOTENCY_HORIZON_S holds the same figure).
local APPLIED_HORIZON_MS = 600000

local function remember_applied(id, now)
  redis.call('ZADD', K_APPLIED, now, id)
  redis.call('ZREMRANGEBYSCORE', K_APPLIED, '-inf', now - APPLIED_HORIZON_MS)
end

local function count(counter)
  redis.call('HINCRBY', K_STATE, 'n_' .. counter, 1)
end

-- The sliding window's functions live in window.lua, which follows this file in every
-- script; they are declared here, before the rules below that use them.
local WIN = nil -- this script call's window: loaded once, expired to `now`
local window_load, window_put, window_stats

local function rate(part, whole)
  if whole == 0 then
    return 0
  end
  return part / whole
end

local function trip_reason(st, policy, what)
  local fr, sr = rate(st.failures, st.calls), rate(st.slow, st.calls)
  if fr >= policy.failure_rate_threshold then
    return string.format('%s failure rate %.1f%% >= %.1f%% over %d calls',
      what, fr * 100, policy.failure_rate_threshold * 100, st.calls)
  end
  if sr >= policy.slow_call_rate_threshold then
    return string.format('%s slow-call rate %.1f%% >= %.1f%% over %d calls',
      what, sr * 100, policy.slow_call_rate_threshold * 100, st.calls)
  end
  return nil
end

-- Why the current streak of failures trips the breaker, or nil (no threshold, or below it).
local function streak_reason(s, policy)
  local k = policy.consecutive_failures_threshold
  if k ~= nil and s.streak >= k then
    return string.format('%d consecutive failures >= %d', s.streak, k)
  end
  return nil
end

-- Moves the breaker to `to`: a new epoch, an empty window, no permits; OPEN gets its
-- (growing) wait. The event is appended to the stream, then published with its stream id.
local function transition(s, to, reason, now, policy)
  redis.call('HINCRBY', K_STATE, 'n_to_' .. to, 1)
  local st
  if s.state == 'half_open' then
    st = {calls = s.probe_calls, failures = s.probe_failures, slow = s.probe_slow}
  else
    st = window_stats(now, policy.window)
  end
  local from = s.state
  s.epoch = s.epoch + 1
  s.state = to
  s.changed_at = now
  s.probe_calls, s.probe_failures, s.probe_slow, s.streak = 0, 0, 0, 0
  s.open_until = 0
  redis.call('DEL', K_PERMITS, K_WINDOW)
  WIN = nil
  if to == 'open' then
    s.consecutive_trips = s.consecutive_trips + 1
    local wait = policy.wait_in_open * policy.wait_in_open_multiplier ^ math.max(s.consecutive_trips - 1, 0)
    if wait > policy.max_wait_in_open then
      wait = policy.max_wait_in_open
    end
    s.open_until = now + math.floor(wait * 1000 + 0.5)
  elseif to == 'closed' then
    s.consecutive_trips = 0
  end
  redis.call('HSET', K_STATE, 'state', to, 'epoch', s.epoch, 'changed_at', now,
    'open_until', s.open_until, 'consecutive_trips', s.consecutive_trips,
    'probe_calls', 0, 'probe_failures', 0, 'probe_slow', 0, 'streak', 0)
  local event = {
    kind = 'transition', breaker = NAME, from_state = from, to_state = to, reason = reason,
    at_ms = now, epoch = s.epoch, incarnation = s.incarnation, who = WHO, window = st,
    open_until_ms = s.open_until, consecutive_trips = s.consecutive_trips,
  }
  event.stream_id = redis.call('XADD', K_STREAM, 'MAXLEN', '~', STREAM_MAXLEN, '*',
    'event', cjson.encode(event))
  redis.call('PUBLISH', CHANNEL, cjson.encode(event))
  return event
end

-- A probe not reported within max_wait_in_half_open is evidence that the model hangs (or
-- that its worker died): the breaker goes back to OPEN, as resilience4j's
-- maxWaitDurationInHalfOpenState does. Its permit is never handed to another caller while
-- the first probe may still run, so HALF_OPEN never has more than N probes in flight.
-- Returns whether it re-opened the breaker.
local function lapse_probes(s, now, policy)
  local flat = redis.call('HGETALL', K_PERMITS)
  local lapse = policy.max_wait_in_half_open * 1000
  local lapsed = 0
  for i = 1, #flat, 2 do
    if now - tonumber(flat[i + 1]) >= lapse then
      lapsed = lapsed + 1
    end
  end
  if lapsed == 0 then
    return false
  end
  redis.call('HINCRBY', K_STATE, 'n_reclaimed', lapsed)
  transition(s, 'open', string.format('%d probe(s) not reported within max_wait_in_half_open (%gs)',
    lapsed, policy.max_wait_in_half_open), now, policy)
  return true
end

-- HALF_OPEN decides once as many probes have reported as the policy permits: after an
-- outcome, and also when an operator lowered permitted_calls_in_half_open to or below
-- the probes already reported (no outcome would ever come to decide it otherwise).
local function decide_half_open(s, now, policy)
  if s.state ~= 'half_open' or s.probe_calls < policy.permitted_calls_in_half_open then
    return false
  end
  local probes = {calls = s.probe_calls, failures = s.probe_failures, slow = s.probe_slow}
  local reason = trip_reason(probes, policy, 'probe')
  if reason then
    transition(s, 'open', reason, now, policy)
  else
    transition(s, 'closed', string.format('%d of %d probes succeeded',
      probes.calls - probes.failures, probes.calls), now, policy)
  end
  return true
end

-- What every script answers: the state after it ran, plus its own fields.
local function reply(s, now, extra)
  local r = {state = s.state, epoch = s.epoch, incarnation = s.incarnation,
             open_until_ms = s.open_until, now_ms = now, policy_problem = POLICY_PROBLEM}
  for k, v in pairs(extra) do
    r[k] = v
  end
  return cjson.encode(r)
end

