-- Moves one exact message from a queue list to another list, atomically: a job is either
-- still queued or in the reroute list, never in neither.
-- KEYS[1] source list, KEYS[2] destination list; ARGV[1] the raw message.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
