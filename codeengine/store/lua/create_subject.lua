-- Create a subject unless it exists.
-- Returns {1, record} when created, {0, existing record} when the subject existed already.
local record_key = KEYS[1]    -- the subject's record
local audit_key = KEYS[2]     -- the subject's audit stream
local packed_record = ARGV[1] -- the new record, msgpack
local actor = ARGV[2]         -- who creates it (audited)
local fence_city = ARGV[3]    -- the writer's city ('' for no fencing)
local fence_epoch = ARGV[4]   -- the writer's epoch in that city
local writer = ARGV[5]        -- the writer's name (audited)
-- #include audit.lua
local cur = resent(record_key) -- the record is its own create's marker
if cur then return {0, cur} end
local rec = cmsgpack.unpack(packed_record)
fenced(rec, fence_city, fence_epoch, writer)
audit(audit_key, rec, {op='create', actor=actor, reason='', new=rec.col, v=rec.v, at=rec.u,
                       op_id=''})
local packed = cmsgpack.pack(rec)
redis.call('SET', record_key, packed)
return {1, packed}
