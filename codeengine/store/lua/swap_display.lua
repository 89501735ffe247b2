-- The new display token is stored unless another process replaced the one the caller saw in
-- the meantime; either way the stored value is returned, so concurrent refreshes all hand out
-- the same winning token. A stored token carries its seal after its body (codeengine.code.seal,
-- 22 bytes), which the caller's copy, re-packed from what it read, does not: the bodies are
-- compared.
local token_key = KEYS[1] -- the subject's display token
local seen = ARGV[1]      -- the body of the value the caller saw ('' for none)
local new = ARGV[2]       -- the new value, sealed
local ttl_ms = ARGV[3]    -- its time to live (ms)
local cur = redis.call('GET', token_key)
if cur and string.sub(cur, 1, -23) ~= seen then return cur end
redis.call('SET', token_key, new, 'PX', ttl_ms)
return new
