"""Lua scripts for the status writes. They run atomically inside the subject's slot.

Records and audit entries are msgpack, packed and unpacked here with Redis's built-in cmsgpack,
so the script is the single writer of a subject's record and of its audit trail.
"""

from __future__ import annotations

__all__ = [
    "APPEND_SCANS",
    "CREATE_SUBJECT",
    "PUT_KEYRING",
    "REVOKE",
    "SET_STATUS",
    "SWAP_DISPLAY",
]

# KEYS: subject record, audit stream.
# ARGV: packed record, actor, audit stream max length.
# Returns {1, record} when created, {0, existing record} when the subject existed already.
CREATE_SUBJECT = """
local cur = redis.call('GET', KEYS[1])
if cur then
  -- Rewrite the same value: the caller's WAIT then covers the original create too.
  redis.call('SET', KEYS[1], cur, 'KEEPTTL')
  return {0, cur}
end
redis.call('SET', KEYS[1], ARGV[1])
local rec = cmsgpack.unpack(ARGV[1])
local entry = {op='create', actor=ARGV[2], reason='', new=rec.col, v=rec.v, at=rec.u, op_id=''}
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'e', cmsgpack.pack(entry))
return {1, ARGV[1]}
"""

# KEYS: subject record, this operation's marker, audit stream.
# ARGV: if_version, colour, op_id, at, actor, reason, audit stream max length.
# Returns {1, new version, colour} when applied, {2, version, colour} when this op_id was
# applied before (with what it applied), {-1, 0, 0} for an unknown subject and
# {-2, current version, 0} for a stale if_version.
SET_STATUS = """
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
local old = rec.col
rec.col = tonumber(ARGV[2])
rec.v = rec.v + 1
rec.u = tonumber(ARGV[4])
redis.call('SET', KEYS[1], cmsgpack.pack(rec))
redis.call('SET', KEYS[2], rec.v .. ':' .. rec.col, 'EX', 86400)
local entry = {op='status', actor=ARGV[5], reason=ARGV[6], old=old, new=rec.col, v=rec.v,
               at=rec.u, op_id=ARGV[3]}
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'e', cmsgpack.pack(entry))
return {1, rec.v, rec.col}
"""

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

# KEYS: a city's scan log stream. ARGV: max length, fields per entry, then the entries' fields
# one after another. One call appends a whole batch: one command per city per flush instead of
# one per scan.
APPEND_SCANS = """
local width = tonumber(ARGV[2])
local count = 0
for first = 3, #ARGV, width do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, first, first + width - 1))
  count = count + 1
end
return count
"""
