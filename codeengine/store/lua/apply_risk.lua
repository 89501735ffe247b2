#!lua flags=allow-cross-slot-keys
-- Imported risk records, many subjects per call. Each record is applied exactly as a single
-- write would be, one after another in file order; one call per primary and a few hundred rows
-- saves the per-command and per-script cost (and the replication stream's MULTI/EXEC per row),
-- which was most of the import's Redis CPU. The subjects live in different slots of this primary:
-- the script is flagged ``allow-cross-slot-keys`` and builds each subject's keys from the key
-- templates (store.keyspace), so it declares only the first row's record key, which routes the
-- call. A key that is not on this primary (a slot moved meanwhile) fails the call at that row's
-- first read; the rows before it stay applied, which a resumed batch finds as code 3 below.
-- A subject the batch meets first is created (kind, city, no-data colour). Applying the same
-- record again changes nothing: no version, no audit entry. The first change a batch makes to
-- a subject saves the subject's risk periods before it (never read here); every change marks
-- the record as last written by this batch (``rec.lb``), which any other write clears, so a
-- rollback can tell whether anything changed the subject since, and a record this batch wrote
-- last already has its snapshot.
-- Returns one code per record: 0 nothing changed, 1 changed, 2 changed and created, 3 nothing
-- changed but this batch changed the subject before (a resumed batch lists it for the rollback
-- again), -3 a fenced-off writer.
local routing_key = KEYS[1]      -- the first row's subject record (only routes the call)
local now = tonumber(ARGV[1])    -- the import's time (ms)
local actor = ARGV[2]            -- who imports (audited)
local batch = ARGV[3]            -- the batch id
local keep = ARGV[4]             -- seconds a snapshot is kept (for a rollback)
local fence_city = ARGV[5]       -- the writer's city ('' for no fencing)
local fence_epoch = ARGV[6]      -- the writer's epoch in that city
local writer = ARGV[7]           -- the writer's name (audited)
local record_prefix = ARGV[8]    -- a record key's text before the subject
local record_suffix = ARGV[9]    -- and after it
local snapshot_prefix = ARGV[10] -- a snapshot key's text before the subject
local snapshot_suffix = ARGV[11] -- and after it
local audit_prefix = ARGV[12]    -- an audit stream key's text before the subject
local audit_suffix = ARGV[13]    -- and after it
-- ARGV[14...]: eight fields per record, unpacked in the loop below.
-- #include audit.lua
-- #include risk.lua
local codes = {}
for i = 14, #ARGV, 8 do
  -- subject; colour and until (ms) of its risk period; colours it clears (comma list); reason
  -- (the record type); and, for a subject created here, its kind, city and no-data colour.
  local subject, colour, until_ms, clears, reason, kind, city, no_data = unpack(ARGV, i, i + 7)
  local rec_key = record_prefix .. subject .. record_suffix
  local cur = redis.call('GET', rec_key)
  local rec, created = nil, 0
  if cur then
    rec = cmsgpack.unpack(cur)
  else
    rec = {k=tonumber(kind), c=tonumber(city), col=tonumber(no_data), v=1, u=now}
    created = 1
  end
  local original = rec.r or {}
  local m = risk_map(rec.r, now)
  local before = risk_flat(m)
  if clears ~= '' then
    for cleared in string.gmatch(clears, '%d+') do m[tonumber(cleared)] = nil end
  end
  local new_colour, new_until = tonumber(colour), tonumber(until_ms)
  if new_colour ~= 1 and new_until > now and (m[new_colour] or 0) < new_until then
    m[new_colour] = new_until
  end
  local after = risk_flat(m)
  -- Nothing to change (a repeat, or a record that ends no running period): no write at all,
  -- and a subject the topic library names without any risk is not created for it.
  if same(before, after) then
    if created == 0 and rec.lb == batch then codes[#codes + 1] = 3 else codes[#codes + 1] = 0 end
  elseif fenced(rec, fence_city, fence_epoch, writer) then
    codes[#codes + 1] = -3
  else
    if rec.lb ~= batch then
      redis.call('SET', snapshot_prefix .. subject .. snapshot_suffix, cmsgpack.pack(original),
                 'NX', 'EX', keep)
    end
    if created == 0 then rec.v = rec.v + 1 end
    rec.r = after
    rec.u = now
    rec.lb = batch
    audit(audit_prefix .. subject .. audit_suffix, rec,
          {op='risk', actor=actor, reason=reason, old=rec.col, new=rec.col, v=rec.v, at=now,
           op_id=batch, risk=after})
    redis.call('SET', rec_key, cmsgpack.pack(rec))
    if created == 1 then codes[#codes + 1] = 2 else codes[#codes + 1] = 1 end
  end
end
return codes
