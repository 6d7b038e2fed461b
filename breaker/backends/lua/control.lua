-- An operator's action. ARGV[7] the target state, ARGV[8] the reason.
local now = now_ms()
local policy = load_policy()
local s = load_state(now, true)
return cjson.encode(transition(s, ARGV[7], ARGV[8], now, policy))
