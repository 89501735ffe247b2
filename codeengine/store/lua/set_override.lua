-- An upheld appeal: its colour overrides the subject's until it ends.
-- Returns {1, version} applied, {2, version} this appeal was applied before, {-1, 0} unknown,
-- {-3, 0} for a fenced-off writer.
local record_key = KEYS[1]  -- the subject's record
local marker_key = KEYS[2]  -- the appeal's marker (the version it applied)
local audit_key = KEYS[3]   -- the subject's audit stream
local colour = ARGV[1]      -- the override's colour
local ends = ARGV[2]        -- when the override ends (ms)
local at = ARGV[3]          -- when (ms)
local actor = ARGV[4]       -- who decided (audited)
local reason = ARGV[5]      -- why (audited)
local appeal_id = ARGV[6]   -- the appeal's id
local fence_city = ARGV[7]  -- the writer's city ('' for no fencing)
local fence_epoch = ARGV[8] -- the writer's epoch in that city
local writer = ARGV[9]      -- the writer's name (audited)
-- #include audit.lua
local done = resent(marker_key)
if done then return {2, tonumber(done)} end
local cur = redis.call('GET', record_key)
if not cur then return {-1, 0} end
local rec = cmsgpack.unpack(cur)
if fenced(rec, fence_city, fence_epoch, writer) then return {-3, 0} end
rec.v = rec.v + 1
rec.lb = nil
rec.o = {tonumber(colour), tonumber(ends)}
rec.u = tonumber(at)
audit(audit_key, rec, {op='appeal', actor=actor, reason=reason, old=rec.col,
                       new=tonumber(colour), v=rec.v, at=rec.u, op_id=appeal_id,
                       ends=tonumber(ends)})
redis.call('SET', record_key, cmsgpack.pack(rec))
redis.call('SET', marker_key, rec.v, 'EX', 86400)
return {1, rec.v}
