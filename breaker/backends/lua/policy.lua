-- An operator's policy change, applied atomically with its consequences.
-- ARGV[7] 'set' or 'clear'; for 'set', ARGV[8..] the policy's fields as name, value pairs.
-- The new policy is checked here as the scripts read it (a policy no script could use is
-- refused before it is stored); the change is announced on the stream and channel; and a
-- HALF_OPEN breaker whose reported probes already reach the new permitted count decides
-- now instead of waiting for an outcome that will never come.
local now = now_ms()
local s = load_state(now, true)
local action = ARGV[7]
if action == 'set' then
  local p, why = checked_policy(hash_table({unpack(ARGV, 8)}))
  if not p then
    return cjson.encode({error = 'invalid policy: ' .. why})
  end
  redis.call('DEL', K_POLICY)
  redis.call('HSET', K_POLICY, unpack(ARGV, 8))
else
  redis.call('DEL', K_POLICY)
  -- Clearing re-adopts the clearing process's configured policy as the fleet default.
  set_fleet_policy(ARGV[6])
end
local policy = load_policy()
local event = {kind = 'policy', breaker = NAME, who = WHO, at_ms = now}
event.stream_id = redis.call('XADD', K_STREAM, 'MAXLEN', '~', STREAM_MAXLEN, '*', 'event', cjson.encode(event))
redis.call('PUBLISH', CHANNEL, cjson.encode(event))
if s.state == 'half_open' then
  if not lapse_probes(s, now, policy) then
    decide_half_open(s, now, policy)
  end
end
return reply(s, now, {})
