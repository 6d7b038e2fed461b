-- An operator's action. ARGV[7] the target state, ARGV[8] the reason.
local now = now_ms()
local policy = load_policy()
local s = load_state(now, true)
if ARGV[7] ~= 'closed' and s.state == ARGV[7] and not (s.state == 'open' and now >= s.open_until) then
  -- Changes nothing (trip an OPEN breaker, disable a DISABLED one): published nowhere, and
  -- the epoch stays, so no call in flight turns stale for nothing (machine.py: unchanged).
  -- A reset always acts: it empties the window; so does a trip of an OPEN breaker whose
  -- wait is over (its next call would be a probe: the trip starts a new wait).
  return cjson.encode({
    kind = 'transition', breaker = NAME, from_state = s.state, to_state = s.state,
    reason = 'already ' .. s.state .. ': nothing changed', at_ms = now, epoch = s.epoch,
    incarnation = s.incarnation, who = WHO, window = window_stats(now, policy.window),
    open_until_ms = s.open_until, consecutive_trips = s.consecutive_trips,
  })
end
if ARGV[7] == 'closed' then
  -- An operator's reset re-adopts the resetting process's configured policy as the
  -- fleet default (how a new default reaches a breaker created by an older deploy).
  set_fleet_policy(ARGV[6])
end
return cjson.encode(transition(s, ARGV[7], ARGV[8], now, policy))
