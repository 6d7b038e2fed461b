-- Shadow mode and recorded history (breaker/shadow.py is the same in Python). Prepended to
-- every breaker script after common.lua.
--
-- History: every outcome that enters the window is also added to a per-second record kept
-- 24 h, for `fusebox breaker what-if`. One hash per hour of store time, named
-- <state key>:history:<hour> (derived here because the hour is the store's, which the
-- caller cannot know; keyspace.py's KEYS table lists it), field <second of the hour>, value
-- calls + failures * 2^20 + slow * 2^40 (one HINCRBY per record call; exact while a model
-- sees under 2^20 calls in one second). Each hash expires 25 h after its last write.
local HISTORY_TTL = 90000
local HISTORY_FAILURE, HISTORY_SLOW = 1048576, 1099511627776
local HISTORY_PENDING = 0 -- this call's outcomes (one `now`: one second), written once

local function history_add(failure, slow)
  HISTORY_PENDING = HISTORY_PENDING + 1 + (failure and HISTORY_FAILURE or 0) + (slow and HISTORY_SLOW or 0)
end

local function history_flush(now)
  if HISTORY_PENDING == 0 then
    return
  end
  local second = math.floor(now / 1000)
  local hour = math.floor(second / 3600)
  local key = K_STATE .. ':history:' .. string.format('%d', hour)
  redis.call('HINCRBY', key, string.format('%d', second - hour * 3600), string.format('%d', HISTORY_PENDING))
  redis.call('EXPIRE', key, HISTORY_TTL)
  HISTORY_PENDING = 0
end

-- METRICS_ONLY as a shadow: each time the window's failure or slow-call rate crosses its
-- threshold (from below, with minimum_calls calls) it counts n_would_trip_<rate> and
-- publishes a `would_trip` event, once per crossing: the flag shadow_<rate> holds the
-- epoch it was raised in, and is dropped when the judged rate falls below again (a
-- transition starts a new epoch, which clears it too).
local SHADOW_RATES = {
  {'failure_rate', 'failures', 'failure_rate_threshold', 'failure rate'},
  {'slow_call_rate', 'slow', 'slow_call_rate_threshold', 'slow-call rate'},
}

local function shadow_check(s, st, policy, now)
  if st.calls < policy.minimum_calls then
    return
  end
  local flags = redis.call('HMGET', K_STATE, 'shadow_failure_rate', 'shadow_slow_call_rate')
  for i, r in ipairs(SHADOW_RATES) do
    local value, limit = rate(st[r[2]], st.calls), policy[r[3]]
    local was = tonumber(flags[i]) == s.epoch
    if value >= limit then
      if not was then
        redis.call('HSET', K_STATE, 'shadow_' .. r[1], s.epoch)
        count('would_trip_' .. r[1])
        local event = {
          kind = 'would_trip', breaker = NAME, from_state = s.state, to_state = s.state,
          reason = string.format('would trip: window %s %.1f%% >= %.1f%% over %d calls',
            r[4], value * 100, limit * 100, st.calls),
          at_ms = now, epoch = s.epoch, incarnation = s.incarnation, who = WHO,
          window = {calls = st.calls, failures = st.failures, slow = st.slow},
          open_until_ms = 0, consecutive_trips = s.consecutive_trips,
        }
        event.stream_id = redis.call('XADD', K_STREAM, 'MAXLEN', '~', STREAM_MAXLEN, '*',
          'event', cjson.encode(event))
        redis.call('PUBLISH', CHANNEL, cjson.encode(event))
      end
    elseif was then
      redis.call('HDEL', K_STATE, 'shadow_' .. r[1])
    end
  end
end
