-- A subject's sealed write: the record, its audit entry and whatever goes with them, computed
-- and sealed by the service (codeengine.store.adapters._sealed); this script only checks that
-- the record is still exactly the one the service read and stores the given bytes. It never
-- builds a record: the MAC key that seals records is never in Redis, not even as an argument.
-- Returns {1, ''} written, {2, marker} this operation's marker exists (a resend: nothing
-- written, the marker rewritten unchanged so that the caller's WAIT covers the first write),
-- {0, current} the subject exists already (a create), {-4, current or ''} the record is not
-- the one read (read it again and retry).
local record_key = KEYS[1]   -- the subject's record
local marker_key = KEYS[2]   -- this operation's marker (any key of the subject's slot if none)
local audit_key = KEYS[3]    -- the subject's audit stream
local side_key = KEYS[4]     -- a key written with the record (snapshot, alias list), or any
local seen = ARGV[1]         -- the record as read ('' for a create)
local new = ARGV[2]          -- the sealed new record ('' to check a resend only)
local entry = ARGV[3]        -- the packed audit entry
local hash = ARGV[4]         -- its MAC
local marker = ARGV[5]       -- the marker's value ('' for a write without a marker)
local side = ARGV[6]         -- '' | 'del' | 'hset' | 'hdel': what to do to side_key
local side_field = ARGV[7]   -- the side hash's field
local side_value = ARGV[8]   -- and its value
if marker ~= '' then
  local done = redis.call('GET', marker_key)
  if done then
    redis.call('SET', marker_key, done, 'KEEPTTL')
    return {2, done}
  end
end
local cur = redis.call('GET', record_key)
if seen == '' and cur then
  -- A create that finds the subject: rewritten unchanged, so that WAIT covers its create.
  redis.call('SET', record_key, cur)
  return {0, cur}
end
if new == '' or (seen ~= '' and cur ~= seen) then return {-4, cur or ''} end
redis.call('SET', record_key, new)
redis.call('XADD', audit_key, '*', 'e', entry, 'h', hash)
if marker ~= '' then redis.call('SET', marker_key, marker, 'EX', 86400) end
if side == 'del' then
  redis.call('DEL', side_key)
elseif side == 'hset' then
  redis.call('HSET', side_key, side_field, side_value)
elseif side == 'hdel' then
  redis.call('HDEL', side_key, side_field)
end
return {1, ''}
