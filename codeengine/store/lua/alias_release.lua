-- Deletes the alias only if it is this subject's (its value without the seal's 22 bytes).
-- Returns {1} released, {0} not this subject's (or unbound).
local alias_key = KEYS[1] -- the alias key
local subject = ARGV[1]   -- the subject that releases it
local cur = redis.call('GET', alias_key)
if cur and string.sub(cur, 1, -23) == subject then
  redis.call('DEL', alias_key)
  return {1}
end
return {0}
