-- The new display token is stored unless another process replaced the one the caller saw in
-- the meantime; either way the stored value is returned, so concurrent refreshes all hand out
-- the same winning token.
local token_key = KEYS[1] -- the subject's display token
local seen = ARGV[1]      -- the value the caller saw ('' for none)
local new = ARGV[2]       -- the new value
local ttl_ms = ARGV[3]    -- its time to live (ms)
local cur = redis.call('GET', token_key)
if cur and cur ~= seen then return cur end
redis.call('SET', token_key, new, 'PX', ttl_ms)
return new
