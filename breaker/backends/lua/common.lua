-- Shared by every breaker script: RedisBackend prepends it to each script when loading.
-- The rules are the ones of breaker/machine.py; keep the two in step.
--
-- KEYS[1] state hash      KEYS[2] window hash    KEYS[3] permits hash
-- KEYS[4] policy hash     KEYS[5] names set      KEYS[6] events stream
-- ARGV[1] breaker name    ARGV[2] who (host:pid) ARGV[3] fixed time in ms, '' to use TIME
-- ARGV[4] events channel  ARGV[5] stream maxlen  ARGV[6] caller's default policy (JSON)
-- ARGV[7..] the script's own arguments

local K_STATE, K_WINDOW, K_PERMITS, K_POLICY, K_NAMES, K_STREAM =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local NAME, WHO, CHANNEL = ARGV[1], ARGV[2], ARGV[4]
local STREAM_MAXLEN = tonumber(ARGV[5])

local POLICY_NUMBERS = {
  'minimum_calls', 'failure_rate_threshold', 'slow_call_duration', 'slow_call_rate_threshold',
  'window', 'wait_in_open', 'wait_in_open_multiplier', 'max_wait_in_open',
  'permitted_calls_in_half_open', 'max_wait_in_half_open', 'call_timeout',
  -- optional (nil when absent or empty: policies stored before it existed still load);
  -- the caller scales durations by it before recording (BreakerPolicy.size_factor)
  'reference_megapixels',
}
local STATE_NUMBERS = {
  'epoch', 'incarnation', 'changed_at', 'open_until', 'consecutive_trips', 'permit_seq',
  'probe_calls', 'probe_failures', 'probe_slow',
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

-- The stored policy (an operator's live change) wins over the caller's default.
local function load_policy()
  local stored = redis.call('HGETALL', K_POLICY)
  local p
  if #stored > 0 then
    p = hash_table(stored)
  else
    p = cjson.decode(ARGV[6])
  end
  for _, k in ipairs(POLICY_NUMBERS) do
    p[k] = tonumber(p[k])
  end
  return p, #stored > 0
end

-- The breaker's state hash as a table; a breaker seen for the first time starts CLOSED,
-- unless `create` is false (read-only callers), in which case nil is returned.
local function load_state(now, create)
  local s = hash_table(redis.call('HGETALL', K_STATE))
  if s.state == nil then
    if not create then
      return nil
    end
    s = {state = 'closed', epoch = 0, incarnation = now, changed_at = now, open_until = 0,
         consecutive_trips = 0, permit_seq = 0, probe_calls = 0, probe_failures = 0, probe_slow = 0}
    redis.call('HSET', K_STATE, 'state', 'closed', 'epoch', 0, 'incarnation', now, 'changed_at', now,
      'open_until', 0, 'consecutive_trips', 0, 'permit_seq', 0, 'probe_calls', 0,
      'probe_failures', 0, 'probe_slow', 0)
    redis.call('SADD', K_NAMES, NAME)
    return s
  end
  for _, k in ipairs(STATE_NUMBERS) do
    s[k] = tonumber(s[k]) or 0
  end
  return s
end

local function count(counter)
  redis.call('HINCRBY', K_STATE, 'n_' .. counter, 1)
end

-- Window buckets are hash fields c<second>, f<second>, s<second> (calls, failures, slow).
local function window_add(now, failure, slow)
  local second = string.format('%d', math.floor(now / 1000))
  redis.call('HINCRBY', K_WINDOW, 'c' .. second, 1)
  if failure then
    redis.call('HINCRBY', K_WINDOW, 'f' .. second, 1)
  end
  if slow then
    redis.call('HINCRBY', K_WINDOW, 's' .. second, 1)
  end
end

-- The window's figures at `now`; with `evict`, buckets that fell out are deleted.
local function window_stats(now, window, evict)
  local flat = redis.call('HGETALL', K_WINDOW)
  local oldest_kept = math.floor(now / 1000) - window + 1
  local st = {calls = 0, failures = 0, slow = 0}
  local stale = {}
  for i = 1, #flat, 2 do
    local field = flat[i]
    if tonumber(string.sub(field, 2)) < oldest_kept then
      stale[#stale + 1] = field
    else
      local kind, n = string.sub(field, 1, 1), tonumber(flat[i + 1])
      if kind == 'c' then
        st.calls = st.calls + n
      elseif kind == 'f' then
        st.failures = st.failures + n
      else
        st.slow = st.slow + n
      end
    end
  end
  if evict then
    -- In chunks: unpack() has a limit on how many values it returns.
    for i = 1, #stale, 500 do
      redis.call('HDEL', K_WINDOW, unpack(stale, i, math.min(i + 499, #stale)))
    end
  end
  return st
end

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

-- Moves the breaker to `to`: a new epoch, an empty window, no permits; OPEN gets its
-- (growing) wait. The event is appended to the stream, then published with its stream id.
local function transition(s, to, reason, now, policy)
  redis.call('HINCRBY', K_STATE, 'n_to_' .. to, 1)
  local st
  if s.state == 'half_open' then
    st = {calls = s.probe_calls, failures = s.probe_failures, slow = s.probe_slow}
  else
    st = window_stats(now, policy.window, false)
  end
  local from = s.state
  s.epoch = s.epoch + 1
  s.state = to
  s.changed_at = now
  s.probe_calls, s.probe_failures, s.probe_slow = 0, 0, 0
  s.open_until = 0
  redis.call('DEL', K_PERMITS, K_WINDOW)
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
    'probe_calls', 0, 'probe_failures', 0, 'probe_slow', 0)
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

-- Probe permits not reported within max_wait_in_half_open go back to the pool.
local function reclaim_permits(now, policy)
  local flat = redis.call('HGETALL', K_PERMITS)
  local lapse = policy.max_wait_in_half_open * 1000
  for i = 1, #flat, 2 do
    if now - tonumber(flat[i + 1]) >= lapse then
      redis.call('HDEL', K_PERMITS, flat[i])
      count('reclaimed')
    end
  end
end

-- What every script answers: the state after it ran, plus its own fields.
local function reply(s, now, extra)
  local r = {state = s.state, epoch = s.epoch, incarnation = s.incarnation,
             open_until_ms = s.open_until, now_ms = now}
  for k, v in pairs(extra) do
    r[k] = v
  end
  return cjson.encode(r)
end

