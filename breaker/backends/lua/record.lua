-- Calls ended. ARGV[7] epoch, ARGV[8] incarnation, ARGV[9] permit ('' for none), ARGV[10]
-- the batch id ('' for none), then one or more pairs from ARGV[11]: outcome
-- (success|failure|timeout|slow|ignored), duration in ms.
-- The batch id is remembered for 10 minutes (APPLIED_HORIZON_MS): a client whose call
-- timed out cannot know whether it ran, and asks before handing its outcomes back again.
-- All the outcomes share the ticket's epoch (the client groups them so); each is judged as
-- if recorded alone and in order: one that trips the breaker makes the rest stale. State,
-- policy and window are read once per call, then kept as running totals.
local now = now_ms()
local policy = load_policy()
local s = load_state(now, true)
local epoch, incarnation, permit = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
local applied, slows, states, epochs, open_untils = {}, {}, {}, {}, {}
local st = nil -- the window's figures, read on first need

if ARGV[10] ~= '' then
  remember_applied(ARGV[10], now)
end
for i = 11, #ARGV, 2 do
  local outcome, duration = ARGV[i], tonumber(ARGV[i + 1])
  local slow = outcome == 'slow' or (outcome ~= 'ignored' and duration >= policy.slow_call_duration * 1000)
  local failure = outcome == 'failure' or outcome == 'timeout'
  local done = false
  if s.state ~= 'disabled' then
    if outcome == 'success' and slow then
      count('slow')
    else
      count(outcome)
    end
    if epoch ~= s.epoch or incarnation ~= s.incarnation then
      count('stale')
    elseif s.state == 'closed' or s.state == 'metrics_only' then
      if outcome ~= 'ignored' then
        if st == nil then
          st = window_stats(now, policy.window, true)
        end
        window_add(now, failure, slow)
        st.calls = st.calls + 1
        if failure then st.failures = st.failures + 1 end
        if slow then st.slow = st.slow + 1 end
        done = true
        if s.state == 'closed' and st.calls >= policy.minimum_calls then
          local reason = trip_reason(st, policy, 'window')
          if reason then
            transition(s, 'open', reason, now, policy)
          end
        end
      end
    elseif s.state == 'half_open' then
      if permit == '' or redis.call('HDEL', K_PERMITS, permit) == 0 then
        count('stale') -- a reclaimed permit reporting late
      elseif outcome ~= 'ignored' then
        done = true
        s.probe_calls = redis.call('HINCRBY', K_STATE, 'probe_calls', 1)
        if failure then
          s.probe_failures = redis.call('HINCRBY', K_STATE, 'probe_failures', 1)
        end
        if slow then
          s.probe_slow = redis.call('HINCRBY', K_STATE, 'probe_slow', 1)
        end
        decide_half_open(s, now, policy)
      end
    end
  end
  applied[#applied + 1] = done
  slows[#slows + 1] = slow
  states[#states + 1] = s.state
  epochs[#epochs + 1] = s.epoch
  open_untils[#open_untils + 1] = s.open_until
end
-- Per outcome: whether it was judged, whether it was slow, and the breaker after it.
return reply(s, now, {applied = applied, slow = slows, states = states, epochs = epochs,
                      open_untils = open_untils})
