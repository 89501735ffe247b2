-- The subject's own hash lists its aliases (masked) and is audited with the subject.
-- Returns {1, version} changed, {0, version} nothing to do, {-1, 0} unknown subject.
local record_key = KEYS[1]  -- the subject's record
local aliases_key = KEYS[2] -- the subject's alias list
local audit_key = KEYS[3]   -- the subject's audit stream
local action = ARGV[1]      -- 'bind' or 'unbind'
local alias = ARGV[2]       -- the alias hash
local listed = ARGV[3]      -- how it is listed: "type:masked"
local actor = ARGV[4]       -- who (audited)
local at = ARGV[5]          -- when (ms)
-- #include audit.lua
local cur = redis.call('GET', record_key)
if not cur then return {-1, 0} end
local rec = cmsgpack.unpack(cur)
local present = redis.call('HGET', aliases_key, alias)
if action == 'bind' then
  if present then return {0, rec.v} end
  redis.call('HSET', aliases_key, alias, listed)
else
  if not present then return {0, rec.v} end
  redis.call('HDEL', aliases_key, alias)
end
local kind = string.sub(listed, 1, (string.find(listed, ':') or 1) - 1)
audit(audit_key, rec, {op='alias_' .. action, actor=actor, reason=kind, old=rec.col,
                       new=rec.col, v=rec.v, at=tonumber(at), op_id=alias})
redis.call('SET', record_key, cmsgpack.pack(rec))
return {1, rec.v}
