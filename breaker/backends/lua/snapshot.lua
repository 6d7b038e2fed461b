-- Everything about one breaker, read in one step. Writes nothing; a breaker the store has
-- never seen is answered as a fresh CLOSED one.
local now = now_ms()
local policy, stored = load_policy()
local s = load_state(now, false)
local raw = {}
if s == nil then
  s = {state = 'closed', epoch = 0, incarnation = 0, changed_at = 0, open_until = 0,
       consecutive_trips = 0, probe_calls = 0, probe_failures = 0, streak = 0}
else
  raw = hash_table(redis.call('HGETALL', K_STATE))
end
local totals = {}
for k, v in pairs(raw) do
  if string.sub(k, 1, 2) == 'n_' then
    totals[string.sub(k, 3)] = tonumber(v)
  end
end
local stored_policy = cjson.null
if stored then
  stored_policy = hash_table(redis.call('HGETALL', K_POLICY))
end
local fleet_policy = redis.call('HGET', K_STATE, 'default_policy') or cjson.null
return reply(s, now, {
  changed_at_ms = s.changed_at, consecutive_trips = s.consecutive_trips,
  window = window_stats(now, policy.window), consecutive_failures = s.streak,
  probes_outstanding = redis.call('HLEN', K_PERMITS),
  probe_calls = s.probe_calls, probe_failures = s.probe_failures,
  totals = totals, stored_policy = stored_policy, fleet_policy = fleet_policy,
})
