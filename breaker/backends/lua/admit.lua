-- May one call run? ARGV[7]: 'admit', or 'advance' to apply time-driven moves only.
-- CLOSED, DISABLED and METRICS_ONLY admit; OPEN rejects until its wait ends and then
-- moves to HALF_OPEN; HALF_OPEN hands out exactly permitted_calls_in_half_open permits.
local mode = ARGV[7]
local now = now_ms()
local policy = load_policy()
local s = load_state(now, true)

if s.state == 'open' and now >= s.open_until then
  transition(s, 'half_open', 'wait in open state elapsed', now, policy)
end
if s.state == 'half_open' then
  if not lapse_probes(s, now, policy) then
    decide_half_open(s, now, policy)
  end
end
if mode == 'advance' then
  return reply(s, now, {})
end

if s.state == 'closed' or s.state == 'disabled' or s.state == 'metrics_only' then
  return reply(s, now, {admitted = true})
end
if s.state == 'half_open' then
  local taken = redis.call('HLEN', K_PERMITS) + s.probe_calls
  if taken < policy.permitted_calls_in_half_open then
    local permit = redis.call('HINCRBY', K_STATE, 'permit_seq', 1)
    redis.call('HSET', K_PERMITS, permit, now)
    count('probes_granted')
    return reply(s, now, {admitted = true, permit = permit})
  end
end
count('rejected')
local extra = {admitted = false}
if s.state == 'open' then
  extra.retry_after = math.max(0, (s.open_until - now) / 1000)
end
return reply(s, now, extra)
