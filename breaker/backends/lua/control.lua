-- An operator's action. ARGV[7] the target state, ARGV[8] the reason.
local now = now_ms()
local policy = load_policy()
local s = load_state(now, true)
if ARGV[7] == 'closed' then
  -- An operator's reset re-adopts the resetting process's configured policy as the
  -- fleet default (how a new default reaches a breaker created by an older deploy).
  set_fleet_policy(ARGV[6])
end
return cjson.encode(transition(s, ARGV[7], ARGV[8], now, policy))
