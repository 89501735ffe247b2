"""Lua scripts for the status writes. They run atomically inside the subject's slot.

Records and audit entries are msgpack, packed and unpacked here with Redis's built-in cmsgpack,
so the script is the single writer of a subject's record and of its audit trail.
"""

from __future__ import annotations

__all__ = [
    "ALIAS_CLAIM",
    "ALIAS_LINK",
    "ALIAS_RELEASE",
    "APPEND_SCANS",
    "APPLY_RISK",
    "CREATE_SUBJECT",
    "FENCE_HANDOVER",
    "FENCE_TICK",
    "PUT_KEYRING",
    "RESTORE_RISK",
    "REVOKE",
    "SET_OVERRIDE",
    "SET_STATUS",
    "SWAP_DISPLAY",
]

# Every audited write appends to the subject's audit stream through this function. Entries form
# a hash chain: each names the hash of the one before (``prev``), its hash ``h`` is the SHA-1 of
# its packed bytes, and the record keeps the latest hash (``rec.h``), so an altered, removed or
# reordered entry breaks the chain (store.audit verifies it). The stream is never trimmed.
_AUDIT = """
local fence_by, fence_ep = '', 0
-- Fencing (codeengine.store.fence): a write carries its city, the writer's epoch and its name. A
-- record remembers the highest epoch of each city that wrote it (``rec.fe``); a write with a
-- lower epoch is refused, so a primary that lost its lease cannot overwrite what the backup
-- wrote after it. An empty city is a deployment without per-city endpoints: no fencing.
local function fenced(rec, city, epoch, by)
  if city == '' then return false end
  epoch = tonumber(epoch)
  local fe = rec.fe
  if type(fe) ~= 'table' then fe = {} end
  local seen = fe[city]
  if seen and seen > epoch then return true end
  fe[city] = epoch
  rec.fe = fe
  fence_by, fence_ep = by, epoch
  return false
end
local function audit(stream, rec, entry)
  if fence_by ~= '' then entry.by = fence_by; entry.ep = fence_ep end
  entry.prev = rec.h or ''
  local packed = cmsgpack.pack(entry)
  local h = redis.sha1hex(packed)
  rec.h = h
  redis.call('XADD', stream, '*', 'e', packed, 'h', h)
end
"""

# KEYS: subject record, audit stream.
# ARGV: packed record, actor, fence city, fence epoch, writer.
# Returns {1, record} when created, {0, existing record} when the subject existed already.
CREATE_SUBJECT = (
    _AUDIT
    + """
local cur = redis.call('GET', KEYS[1])
if cur then
  -- Rewrite the same value: the caller's WAIT then covers the original create too.
  redis.call('SET', KEYS[1], cur, 'KEEPTTL')
  return {0, cur}
end
local rec = cmsgpack.unpack(ARGV[1])
fenced(rec, ARGV[3], ARGV[4], ARGV[5])
audit(KEYS[2], rec, {op='create', actor=ARGV[2], reason='', new=rec.col, v=rec.v, at=rec.u,
                     op_id=''})
local packed = cmsgpack.pack(rec)
redis.call('SET', KEYS[1], packed)
return {1, packed}
"""
)

# KEYS: subject record, this operation's marker, audit stream.
# ARGV: if_version, colour, op_id, at, actor, reason, fence city, fence epoch, writer.
# Returns {1, new version, colour} when applied, {2, version, colour} when this op_id was
# applied before (with what it applied), {-1, 0, 0} for an unknown subject,
# {-2, current version, 0} for a stale if_version and {-3, 0, 0} for a fenced-off writer.
SET_STATUS = (
    _AUDIT
    + """
local done = redis.call('GET', KEYS[2])
if done then
  -- A resend: rewrite the same marker so that the caller's WAIT covers the original write.
  redis.call('SET', KEYS[2], done, 'KEEPTTL')
  local sep = string.find(done, ':')
  return {2, tonumber(string.sub(done, 1, sep - 1)), tonumber(string.sub(done, sep + 1))}
end
local cur = redis.call('GET', KEYS[1])
if not cur then return {-1, 0, 0} end
local rec = cmsgpack.unpack(cur)
if rec.v ~= tonumber(ARGV[1]) then return {-2, rec.v, 0} end
if fenced(rec, ARGV[7], ARGV[8], ARGV[9]) then return {-3, 0, 0} end
local old = rec.col
rec.col = tonumber(ARGV[2])
rec.v = rec.v + 1
rec.lb = nil
rec.u = tonumber(ARGV[4])
audit(KEYS[3], rec, {op='status', actor=ARGV[5], reason=ARGV[6], old=old, new=rec.col, v=rec.v,
                     at=rec.u, op_id=ARGV[3]})
redis.call('SET', KEYS[1], cmsgpack.pack(rec))
redis.call('SET', KEYS[2], rec.v .. ':' .. rec.col, 'EX', 86400)
return {1, rec.v, rec.col}
"""
)

# Risk periods are a flat array {colour, until, colour, until, ...} in the record (``rec.r``),
# one pair per colour, ordered by colour. This mirrors codeengine.code.rules.merge_risk_at.
_RISK = """
local function risk_map(flat, now)
  local m = {}
  if flat then
    for i = 1, #flat, 2 do
      if flat[i + 1] > now then m[flat[i]] = flat[i + 1] end
    end
  end
  return m
end
local function risk_flat(m)
  local out = {}
  for colour = 0, 3 do
    if m[colour] then out[#out + 1] = colour; out[#out + 1] = m[colour] end
  end
  return out
end
local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end
"""

# Imported risk records, many subjects per call. Each record is applied exactly as a single
# write would be, one after another in file order; one call per primary and a few hundred rows
# saves the per-command and per-script cost (and the replication stream's MULTI/EXEC per row),
# which was most of the import's Redis CPU. The subjects live in different slots of this primary:
# the script is flagged ``allow-cross-slot-keys`` and builds each subject's keys from the key
# templates (store.keyspace), so it declares only the first row's record key, which routes the
# call. A key that is not on this primary (a slot moved meanwhile) fails the call at that row's
# first read; the rows before it stay applied, which a resumed batch finds as code 3 below.
# KEYS: the first row's subject record.
# ARGV: now, actor, batch id, seconds the snapshot is kept (for a rollback), fence city, fence
# epoch, writer, then prefix and suffix of the record, snapshot and audit keys (the subject goes
# between them), then eight fields per record: subject, colour, until, cleared colours (comma
# list), reason (record type), kind, city, no-data colour.
# A subject the batch meets first is created (kind, city, no-data colour). Applying the same
# record again changes nothing: no version, no audit entry. The first change a batch makes to
# a subject saves the subject's risk periods before it (never read here); every change marks
# the record as last written by this batch (``rec.lb``), which any other write clears, so a
# rollback can tell whether anything changed the subject since, and a record this batch wrote
# last already has its snapshot.
# Returns one code per record: 0 nothing changed, 1 changed, 2 changed and created, 3 nothing
# changed but this batch changed the subject before (a resumed batch lists it for the rollback
# again), -3 a fenced-off writer.
APPLY_RISK = (
    "#!lua flags=allow-cross-slot-keys\n"
    + _AUDIT
    + _RISK
    + """
local now, actor, batch, keep = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local city_fence, epoch, writer = ARGV[5], ARGV[6], ARGV[7]
local rec_pre, rec_post, snap_pre, snap_post = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local audit_pre, audit_post = ARGV[12], ARGV[13]
local codes = {}
for i = 14, #ARGV, 8 do
  local subject = ARGV[i]
  local rec_key = rec_pre .. subject .. rec_post
  local cur = redis.call('GET', rec_key)
  local rec, created = nil, 0
  if cur then
    rec = cmsgpack.unpack(cur)
  else
    rec = {k=tonumber(ARGV[i + 5]), c=tonumber(ARGV[i + 6]), col=tonumber(ARGV[i + 7]), v=1,
           u=now}
    created = 1
  end
  local original = rec.r or {}
  local m = risk_map(rec.r, now)
  local before = risk_flat(m)
  local clears = ARGV[i + 3]
  if clears ~= '' then
    for colour in string.gmatch(clears, '%d+') do m[tonumber(colour)] = nil end
  end
  local colour, untilv = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  if colour ~= 1 and untilv > now and (m[colour] or 0) < untilv then m[colour] = untilv end
  local after = risk_flat(m)
  -- Nothing to change (a repeat, or a record that ends no running period): no write at all,
  -- and a subject the topic library names without any risk is not created for it.
  if same(before, after) then
    codes[#codes + 1] = (created == 0 and rec.lb == batch) and 3 or 0
  elseif fenced(rec, city_fence, epoch, writer) then
    codes[#codes + 1] = -3
  else
    if rec.lb ~= batch then
      redis.call('SET', snap_pre .. subject .. snap_post, cmsgpack.pack(original), 'NX', 'EX',
                 keep)
    end
    if created == 0 then rec.v = rec.v + 1 end
    rec.r = after
    rec.u = now
    rec.lb = batch
    audit(audit_pre .. subject .. audit_post, rec,
          {op='risk', actor=actor, reason=ARGV[i + 4], old=rec.col, new=rec.col, v=rec.v, at=now,
           op_id=batch, risk=after})
    redis.call('SET', rec_key, cmsgpack.pack(rec))
    codes[#codes + 1] = 1 + created
  end
end
return codes
"""
)

# A batch's rollback of one subject. KEYS: subject record, the batch's snapshot, audit stream.
# ARGV: now, actor, batch id, fence city, fence epoch, writer. Restores the risk periods saved
# before the batch, unless
# something else wrote the subject after the batch did (then ``rec.lb`` is no longer the batch).
# Returns {1, version} restored, {0, version} nothing to do, {-2, version} changed since,
# {-3, 0} for a fenced-off writer.
RESTORE_RISK = (
    _AUDIT
    + """
local snap = redis.call('GET', KEYS[2])
local cur = redis.call('GET', KEYS[1])
if not snap or not cur then return {0, 0} end
local rec = cmsgpack.unpack(cur)
if rec.lb ~= ARGV[3] then return {-2, rec.v} end
if fenced(rec, ARGV[4], ARGV[5], ARGV[6]) then return {-3, 0} end
local original = cmsgpack.unpack(snap)
rec.v = rec.v + 1
rec.r = original
rec.u = tonumber(ARGV[1])
rec.lb = nil
audit(KEYS[3], rec, {op='rollback', actor=ARGV[2], reason='batch rolled back', old=rec.col,
                     new=rec.col, v=rec.v, at=rec.u, op_id=ARGV[3], risk=original})
redis.call('SET', KEYS[1], cmsgpack.pack(rec))
redis.call('DEL', KEYS[2])
return {1, rec.v}
"""
)

# An upheld appeal. KEYS: subject record, the appeal's marker, audit stream.
# ARGV: colour, until, at, actor, reason, appeal id, fence city, fence epoch, writer.
# Returns {1, version} applied, {2, version} this appeal was applied before, {-1, 0} unknown,
# {-3, 0} for a fenced-off writer.
SET_OVERRIDE = (
    _AUDIT
    + """
local done = redis.call('GET', KEYS[2])
if done then
  redis.call('SET', KEYS[2], done, 'KEEPTTL')
  return {2, tonumber(done)}
end
local cur = redis.call('GET', KEYS[1])
if not cur then return {-1, 0} end
local rec = cmsgpack.unpack(cur)
if fenced(rec, ARGV[7], ARGV[8], ARGV[9]) then return {-3, 0} end
rec.v = rec.v + 1
rec.lb = nil
rec.o = {tonumber(ARGV[1]), tonumber(ARGV[2])}
rec.u = tonumber(ARGV[3])
audit(KEYS[3], rec, {op='appeal', actor=ARGV[4], reason=ARGV[5], old=rec.col,
                     new=tonumber(ARGV[1]), v=rec.v, at=rec.u, op_id=ARGV[6],
                     ends=tonumber(ARGV[2])})
redis.call('SET', KEYS[1], cmsgpack.pack(rec))
redis.call('SET', KEYS[2], rec.v, 'EX', 86400)
return {1, rec.v}
"""
)

# KEYS: the subject's display token. ARGV: the value the caller saw ('' for none), the new
# value, its time to live in ms. The new value is stored unless another process replaced the
# one the caller saw in the meantime; either way the stored value is returned, so concurrent
# refreshes all hand out the same winning token.
SWAP_DISPLAY = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return cur end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return ARGV[2]
"""

# KEYS: sealed keyring, public trust list, keyring version. ARGV: expected version (0: none
# yet), new sealed keyring, its version, the trust list JSON.
# Returns {1, new version} or {-2, current version} when the expected version is stale.
PUT_KEYRING = """
local version = tonumber(redis.call('GET', KEYS[3]) or '0')
if version ~= tonumber(ARGV[1]) then return {-2, version} end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[4])
redis.call('SET', KEYS[3], ARGV[3])
return {1, tonumber(ARGV[3])}
"""

# KEYS: a revocation set. ARGV: member, score, prune-below score ('' for no pruning).
# Adds the member (idempotent) and drops entries that no longer matter (expired codes).
REVOKE = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if ARGV[3] ~= '' then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3]) end
return redis.call('ZCARD', KEYS[1])
"""

# KEYS: a city's scan log stream, the batch's marker. ARGV: max length, then the entries, each
# packed (codeengine.code.scans.ScanEntry.pack) as the value of the entry's one field, "e". One call
# appends a whole batch: one command per city per flush instead of one per scan. A batch whose
# marker exists was written before (its answer was lost): nothing is written again.
APPEND_SCANS = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', 3600) == false then return 0 end
for i = 2, #ARGV do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i])
end
return #ARGV - 1
"""

# Card-code fusion. An alias key (its own slot) says which subject a credential stands for; it
# is the authority on "one alias, at most one subject". The subject's own hash lists its
# aliases (masked) and is audited with the subject.

# KEYS: the alias key. ARGV: subject. Returns {1} claimed now, {0} already this subject's,
# {-1} another subject's (nothing named).
ALIAS_CLAIM = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then return {0} end
if cur then return {-1} end
redis.call('SET', KEYS[1], ARGV[1])
return {1}
"""

# KEYS: the alias key. ARGV: subject. Deletes the alias only if it is this subject's.
# Returns {1} released, {0} not this subject's (or unbound).
ALIAS_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return {1}
end
return {0}
"""

# KEYS: subject record, the subject's alias list, audit stream.
# ARGV: 'bind' or 'unbind', alias hash, "type:masked", actor, at.
# Returns {1, version} changed, {0, version} nothing to do, {-1, 0} unknown subject.
ALIAS_LINK = (
    _AUDIT
    + """
local cur = redis.call('GET', KEYS[1])
if not cur then return {-1, 0} end
local rec = cmsgpack.unpack(cur)
local listed = redis.call('HGET', KEYS[2], ARGV[2])
if ARGV[1] == 'bind' then
  if listed then return {0, rec.v} end
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
else
  if not listed then return {0, rec.v} end
  redis.call('HDEL', KEYS[2], ARGV[2])
end
local kind = string.sub(ARGV[3], 1, (string.find(ARGV[3], ':') or 1) - 1)
audit(KEYS[3], rec, {op='alias_' .. ARGV[1], actor=ARGV[4], reason=kind, old=rec.col,
                     new=rec.col, v=rec.v, at=tonumber(ARGV[5]), op_id=ARGV[2]})
redis.call('SET', KEYS[1], cmsgpack.pack(rec))
return {1, rec.v}
"""
)

# The write lease of a city (codeengine.store.fence). KEYS: the lease (hash: owner, epoch, since;
# expires), the epoch counter (never expires), the switch log (stream), the primary's
# heartbeat (its first beat's time; expires), the planned hold (the role that must hold it;
# expires), the backup's heartbeat (expires). Times are the server's clock (TIME), so
# endpoints on different machines agree.
_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function grant(to, from, why, lease_ms)
  local epoch = redis.call('INCR', KEYS[2])
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'owner', to, 'epoch', epoch, 'since', now)
  redis.call('PEXPIRE', KEYS[1], lease_ms)
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 200, '*', 'at', now, 'from', from or '', 'to', to,
             'epoch', epoch, 'why', why)
  return epoch
end
local function answer()
  local h = redis.call('HMGET', KEYS[1], 'owner', 'epoch')
  return {h[1] or '', tonumber(h[2] or '0'), redis.call('PTTL', KEYS[1]),
          redis.call('GET', KEYS[5]) or ''}
end
"""

# One endpoint's periodic beat. ARGV: role (primary|backup), lease ms, handback ms, whether a
# backup may take a free lease ('1' once it has run for a lease period: at a cold start the
# primary's first beat may not have come yet). The holder renews; a free lease goes to the
# primary, or to the backup when no primary is beating (it died) or a planned hold names it.
# A backup that holds the lease hands it back once the primary has been beating for the
# handback period (hysteresis), unless a hold keeps it.
# Returns {owner, epoch, lease ttl ms, held role}.
FENCE_TICK = (
    _LEASE
    + """
local role, lease_ms, handback_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local hold = redis.call('GET', KEYS[5])
if role == 'primary' then
  if redis.call('SET', KEYS[4], now, 'NX', 'PX', lease_ms) == false then
    redis.call('PEXPIRE', KEYS[4], lease_ms)
  end
else
  redis.call('SET', KEYS[6], now, 'PX', lease_ms)
end
-- A hold only counts for an endpoint that is beating: a plan never leaves a city without a
-- writer because the endpoint it named has died since.
local function beating(r)
  return redis.call('EXISTS', r == 'primary' and KEYS[4] or KEYS[6]) == 1
end
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner == role then
  if hold and hold ~= role and beating(hold) then
    grant(hold, owner, 'planned', lease_ms)
  elseif hold and hold ~= role then
    redis.call('PEXPIRE', KEYS[1], lease_ms)
  elseif role == 'backup' and not hold then
    local since = redis.call('GET', KEYS[4])
    if since and now - tonumber(since) >= handback_ms then
      grant('primary', 'backup', 'handback', lease_ms)
    else
      redis.call('PEXPIRE', KEYS[1], lease_ms)
    end
  else
    redis.call('PEXPIRE', KEYS[1], lease_ms)
  end
elseif not owner then
  local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
  local before = nil
  if #last > 0 then
    local f = last[1][2]
    for i = 1, #f, 2 do if f[i] == 'to' then before = f[i + 1] end end
  end
  local why = before and 'lease_expired' or 'start'
  if hold and hold ~= role and beating(hold) then
    -- Free, but held for the other endpoint, which is alive: it takes it at its next beat.
  elseif hold == role or (hold and (role == 'primary' or ARGV[4] == '1')) then
    grant(role, before, why, lease_ms)
  elseif role == 'primary' then
    grant(role, before, why, lease_ms)
  elseif ARGV[4] == '1' and redis.call('EXISTS', KEYS[4]) == 0 then
    grant(role, before, why, lease_ms)
  end
end
-- A lease held by the other endpoint is never taken here, even for a planned hold: the holder
-- hands it over in its own beat, so it stops believing in its lease as the other gets it.
return answer()
"""
)

# A planned switch by ops: only the hold is set here. ARGV: the role that must hold the lease,
# hold ms (0 lifts the hold and lets the tick's rules decide again), lease ms (unused). The
# current holder hands the lease over at its next beat (a dead holder's lease runs out).
# Returns {owner, epoch, lease ttl ms, held role}.
FENCE_HANDOVER = (
    _LEASE
    + """
local to, hold_ms, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if hold_ms > 0 then
  redis.call('SET', KEYS[5], to, 'PX', hold_ms)
else
  redis.call('DEL', KEYS[5])
end
return answer()
"""
)
