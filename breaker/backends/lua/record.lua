-- Calls ended. ARGV[7] epoch, ARGV[8] incarnation, ARGV[9] permit ('' for none), ARGV[10]
-- the batch id ('' for none), then one or more pairs from ARGV[11]: outcome
-- (success|failure|timeout|slow|ignored), duration in ms.
-- The batch id is remembered for 10 minutes (APPLIED_HORIZON_MS): a client whose call
-- timed out cannot know whether it ran, and asks before handing its outcomes back again.
-- All the outcomes share the ticket's epoch (the client groups them so); each is judged as
-- if recorded alone and in order: one that trips the breaker makes the rest stale. State,
-- policy and window are read once per call; the window keeps running sums (common.lua).
local now = now_ms()
local policy = load_policy()
local s = load_state(now, true)
local epoch, incarnation, permit = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
local applied, slows, states, epochs, open_untils = {}, {}, {}, {}, {}

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
        local st = window_put(now, policy.window, 1, failure and 1 or 0, slow and 1 or 0)
        history_add(failure, slow)
        done = true
        if failure then
          s.streak = redis.call('HINCRBY', K_STATE, 'streak', 1)
        elseif s.streak > 0 then
          s.streak = 0
          redis.call('HSET', K_STATE, 'streak', 0)
        end
        if s.state == 'closed' then
          local reason = nil
          if st.calls >= policy.minimum_calls then
            reason = trip_reason(st, policy, 'window')
          end
          if reason == nil then
            reason = streak_reason(s, policy)
          end
          if reason then
            transition(s, 'open', reason, now, policy)
          end
        else
          shadow_check(s, st, policy, now) -- METRICS_ONLY: says when it would have tripped
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
history_flush(now)
-- Per outcome: whether it was judged, whether it was slow, and the breaker after it.
return reply(s, now, {applied = applied, slow = slows, states = states, epochs = epochs,
                      open_untils = open_untils})
