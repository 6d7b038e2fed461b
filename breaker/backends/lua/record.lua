-- One call ended. ARGV[7] epoch, ARGV[8] incarnation, ARGV[9] permit ('' for none),
-- ARGV[10] outcome (success|failure|timeout|slow|ignored), ARGV[11] duration in ms.
-- Counts the outcome, judges it if its epoch is current, and takes any transition.
local now = now_ms()
local policy = load_policy()
local s = load_state(now, true)
local outcome, duration = ARGV[10], tonumber(ARGV[11])
local slow = outcome == 'slow' or (outcome ~= 'ignored' and duration >= policy.slow_call_duration * 1000)
local failure = outcome == 'failure' or outcome == 'timeout'
local applied = false

if s.state ~= 'disabled' then
  if outcome == 'success' and slow then
    count('slow')
  else
    count(outcome)
  end
  if tonumber(ARGV[7]) ~= s.epoch or tonumber(ARGV[8]) ~= s.incarnation then
    count('stale')
  elseif s.state == 'closed' or s.state == 'metrics_only' then
    if outcome ~= 'ignored' then
      window_add(now, failure, slow)
      applied = true
      if s.state == 'closed' then
        local st = window_stats(now, policy.window, true)
        if st.calls >= policy.minimum_calls then
          local reason = trip_reason(st, policy, 'window')
          if reason then
            transition(s, 'open', reason, now, policy)
          end
        end
      end
    end
  elseif s.state == 'half_open' then
    if ARGV[9] == '' or redis.call('HDEL', K_PERMITS, ARGV[9]) == 0 then
      count('stale') -- a reclaimed permit reporting late
    elseif outcome ~= 'ignored' then
      applied = true
      s.probe_calls = redis.call('HINCRBY', K_STATE, 'probe_calls', 1)
      if failure then
        s.probe_failures = redis.call('HINCRBY', K_STATE, 'probe_failures', 1)
      end
      if slow then
        s.probe_slow = redis.call('HINCRBY', K_STATE, 'probe_slow', 1)
      end
      if s.probe_calls >= policy.permitted_calls_in_half_open then
        local probes = {calls = s.probe_calls, failures = s.probe_failures, slow = s.probe_slow}
        local reason = trip_reason(probes, policy, 'probe')
        if reason then
          transition(s, 'open', reason, now, policy)
        else
          transition(s, 'closed', string.format('%d of %d probes succeeded',
            probes.calls - probes.failures, probes.calls), now, policy)
        end
      end
    end
  end
end
return reply(s, now, {applied = applied, slow = slow})
