#!lua flags=allow-cross-slot-keys
-- The import's write: many subjects' sealed records and audit entries on one primary, in file
-- order, each stored only if its record is still exactly the one the importer read (else that
-- row's code says so and the importer reads and computes it again). The importer computed and
-- sealed everything (codeengine.store.adapters.batches); a row with a snapshot saves it for
-- the batch's rollback unless one is saved already.
-- Returns one code per row: 1 written, -4 the record changed since it was read.
local routing_key = KEYS[1] -- the first row's record key (only routes the call)
local keep = ARGV[1]        -- seconds a snapshot is kept (for a rollback)
local codes = {}
-- ARGV[2...]: eight fields per row, unpacked in the loop below.
for i = 2, #ARGV, 8 do
  -- the subject's record, audit stream and snapshot keys; the record as read ('' for none),
  -- the sealed new record, the packed audit entry, its MAC and the snapshot ('' for none).
  local record_key, audit_key, snapshot_key, seen, new, entry, hash, snapshot = unpack(ARGV, i, i + 7)
  local cur = redis.call('GET', record_key) or ''
  if cur ~= seen then
    codes[#codes + 1] = -4
  else
    if snapshot ~= '' then redis.call('SET', snapshot_key, snapshot, 'NX', 'EX', keep) end
    redis.call('SET', record_key, new)
    redis.call('XADD', audit_key, '*', 'e', entry, 'h', hash)
    codes[#codes + 1] = 1
  end
end
return codes
