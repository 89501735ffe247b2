-- Deletes the alias only if it is this subject's.
-- Returns {1} released, {0} not this subject's (or unbound).
local alias_key = KEYS[1] -- the alias key
local subject = ARGV[1]   -- the subject that releases it
if redis.call('GET', alias_key) == subject then
  redis.call('DEL', alias_key)
  return {1}
end
return {0}
