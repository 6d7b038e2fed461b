-- Refusals a process decided from its pushed state (no script decided them), added to the
-- breaker's `rejected` total exactly once. KEYS[1] the state hash, KEYS[2] the applied
-- batches (as record.lua keeps them); ARGV[1] the batch id, ARGV[2] how many, ARGV[3] the
-- test clock in ms ('' in production: the store's TIME).
-- A client whose call timed out asks about the batch id before counting them again. Ids are
-- remembered for APPLIED_HORIZON_MS of lua/common.lua (10 minutes), whatever their count:
-- the same rule as every other write id in that set.
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return 0
end
local now
if ARGV[3] ~= nil and ARGV[3] ~= '' then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 600000)
redis.call('HINCRBY', KEYS[1], 'n_rejected', tonumber(ARGV[2]))
return 1
