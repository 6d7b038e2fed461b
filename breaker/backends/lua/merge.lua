-- What a process decided on its own while the store was unreachable, handed back when it
-- rejoins, so that no outcome is lost and a model that kept failing trips the fleet's
-- breaker at once. ARGV[7] calls, ARGV[8] failures, ARGV[9] slow (the local tally of the
-- last `window` seconds), ARGV[10] '1' when the local breaker was OPEN, ARGV[11] the
-- hand-back's id (remembered like a record batch: a hand-back whose answer was lost is
-- asked about, never sent twice), ARGV[12] ARGV[13] the incarnation and epoch the outcomes
-- were admitted under ('' when unknown), then pairs from ARGV[14]: lifetime counter name, count.
-- The counts enter the current bucket of a CLOSED (or METRICS_ONLY) breaker's window and
-- the window rule decides as for any outcome, but only while the breaker is in the epoch
-- they were admitted under (or in the first epoch of a breaker created after it: the store
-- lost its data and has decided nothing since); otherwise, and in an OPEN, HALF_OPEN or
-- operator state, the counts reach the lifetime totals only (a hand-back of a past epoch
-- is stale, like any late outcome).
local now = now_ms()
local policy = load_policy()
local s = load_state(now, true)
local calls, failures, slow = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local local_open = ARGV[10] == '1'
if redis.call('ZSCORE', K_APPLIED, ARGV[11]) then
  return reply(s, now, {tripped = false, duplicate = true})
end
remember_applied(ARGV[11], now)
if s.state == 'disabled' then
  -- DISABLED records nothing, as record.lua: not even the totals of a hand-back.
  return reply(s, now, {tripped = false})
end
for i = 14, #ARGV, 2 do
  redis.call('HINCRBY', K_STATE, 'n_' .. ARGV[i], tonumber(ARGV[i + 1]))
end
redis.call('HINCRBY', K_STATE, 'n_merged', calls)
local basis_incarnation, basis_epoch = tonumber(ARGV[12]), tonumber(ARGV[13])
if basis_epoch ~= nil and not ((basis_incarnation == s.incarnation and basis_epoch == s.epoch)
    or (s.incarnation > basis_incarnation and s.epoch == 0)) then
  redis.call('HINCRBY', K_STATE, 'n_stale', calls)
  calls = 0
end
local tripped = false
if calls > 0 and (s.state == 'closed' or s.state == 'metrics_only') then
  local st = window_put(now, policy.window, calls, failures, slow)
  if s.state == 'closed' and st.calls >= policy.minimum_calls then
    local reason = trip_reason(st, policy, 'merged window')
    if reason then
      if local_open then
        reason = 'tripped locally while the store was unreachable; ' .. reason
      else
        reason = 'outcomes recorded while the store was unreachable; ' .. reason
      end
      transition(s, 'open', reason, now, policy)
      tripped = true
    end
  end
end
return reply(s, now, {tripped = tripped})
