-- Card-code fusion. An alias key (its own slot) says which subject a credential stands for; it
-- is the authority on "one alias, at most one subject". Its value is the subject sealed by the
-- issuer (codeengine.code.seal: 22 bytes of trailer after the pseudonym), so a Redis writer
-- cannot point a card at another person; the subject is compared without the seal.
-- Returns {1} claimed now, {0} already this subject's, {-1} another subject's (nothing named).
local alias_key = KEYS[1] -- the alias key
local subject = ARGV[1]   -- the subject that claims it
local sealed = ARGV[2]    -- the same, sealed: what is stored
local cur = redis.call('GET', alias_key)
if cur and string.sub(cur, 1, -23) == subject then return {0} end
if cur then return {-1} end
redis.call('SET', alias_key, sealed)
return {1}
