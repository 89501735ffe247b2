-- A versioned compare-and-set of the colour, idempotent by operation id.
-- Returns {1, new version, colour} when applied, {2, version, colour} when this op_id was
-- applied before (with what it applied), {-1, 0, 0} for an unknown subject,
-- {-2, current version, 0} for a stale if_version and {-3, 0, 0} for a fenced-off writer.
local record_key = KEYS[1]  -- the subject's record
local marker_key = KEYS[2]  -- this operation's marker ("version:colour" it applied)
local audit_key = KEYS[3]   -- the subject's audit stream
local if_version = ARGV[1]  -- the version the caller saw
local colour = ARGV[2]      -- the new colour
local op_id = ARGV[3]       -- the operation's id
local at = ARGV[4]          -- when (ms)
local actor = ARGV[5]       -- who (audited)
local reason = ARGV[6]      -- why (audited)
local fence_city = ARGV[7]  -- the writer's city ('' for no fencing)
local fence_epoch = ARGV[8] -- the writer's epoch in that city
local writer = ARGV[9]      -- the writer's name (audited)
-- #include audit.lua
local done = resent(marker_key)
if done then
  local sep = string.find(done, ':')
  return {2, tonumber(string.sub(done, 1, sep - 1)), tonumber(string.sub(done, sep + 1))}
end
local cur = redis.call('GET', record_key)
if not cur then return {-1, 0, 0} end
local rec = cmsgpack.unpack(cur)
if rec.v ~= tonumber(if_version) then return {-2, rec.v, 0} end
if fenced(rec, fence_city, fence_epoch, writer) then return {-3, 0, 0} end
local old = rec.col
rec.col = tonumber(colour)
rec.v = rec.v + 1
rec.lb = nil
rec.u = tonumber(at)
audit(audit_key, rec, {op='status', actor=actor, reason=reason, old=old, new=rec.col, v=rec.v,
                       at=rec.u, op_id=op_id})
redis.call('SET', record_key, cmsgpack.pack(rec))
redis.call('SET', marker_key, rec.v .. ':' .. rec.col, 'EX', 86400)
return {1, rec.v, rec.col}
