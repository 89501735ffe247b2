-- Card-code fusion. An alias key (its own slot) says which subject a credential stands for; it
-- is the authority on "one alias, at most one subject".
-- Returns {1} claimed now, {0} already this subject's, {-1} another subject's (nothing named).
local alias_key = KEYS[1] -- the alias key
local subject = ARGV[1]   -- the subject that claims it
local cur = redis.call('GET', alias_key)
if cur == subject then return {0} end
if cur then return {-1} end
redis.call('SET', alias_key, subject)
return {1}
