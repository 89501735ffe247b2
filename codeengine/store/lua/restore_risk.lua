-- A batch's rollback of one subject: restores the risk periods saved before the batch, unless
-- something else wrote the subject after the batch did (then ``rec.lb`` is no longer the batch).
-- Returns {1, version} restored, {0, version} nothing to do, {-2, version} changed since,
-- {-3, 0} for a fenced-off writer.
local record_key = KEYS[1]   -- the subject's record
local snapshot_key = KEYS[2] -- the batch's snapshot of the subject's risk periods
local audit_key = KEYS[3]    -- the subject's audit stream
local now = ARGV[1]          -- the rollback's time (ms)
local actor = ARGV[2]        -- who rolls back (audited)
local batch = ARGV[3]        -- the batch id
local fence_city = ARGV[4]   -- the writer's city ('' for no fencing)
local fence_epoch = ARGV[5]  -- the writer's epoch in that city
local writer = ARGV[6]       -- the writer's name (audited)
-- #include audit.lua
local snap = redis.call('GET', snapshot_key)
local cur = redis.call('GET', record_key)
if not snap or not cur then return {0, 0} end
local rec = cmsgpack.unpack(cur)
if rec.lb ~= batch then return {-2, rec.v} end
if fenced(rec, fence_city, fence_epoch, writer) then return {-3, 0} end
local original = cmsgpack.unpack(snap)
rec.v = rec.v + 1
rec.r = original
rec.u = tonumber(now)
rec.lb = nil
audit(audit_key, rec, {op='rollback', actor=actor, reason='batch rolled back', old=rec.col,
                       new=rec.col, v=rec.v, at=rec.u, op_id=batch, risk=original})
redis.call('SET', record_key, cmsgpack.pack(rec))
redis.call('DEL', snapshot_key)
return {1, rec.v}
