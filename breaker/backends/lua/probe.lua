-- Is the store usable, not merely reachable? A PING is answered by a server that refuses
-- every write (out of memory with noeviction, a read-only replica after a failover) and
-- by one that lost its scripts. This script runs and writes, as every breaker decision
-- does, so its success is what a process needs before it trusts the store again.
-- KEYS[1] the probe key; ARGV[1] who is asking.
redis.call('SET', KEYS[1], ARGV[1], 'PX', 10000)
return 1
