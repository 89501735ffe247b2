-- Fencing, resends and the audit trail, shared by every audited write (expanded where a script
-- says "#include audit.lua").
--
-- Fencing (codeengine.store.fence): a write carries its city, the writer's epoch and its name. A
-- record remembers the highest epoch of each city that wrote it (``rec.fe``); a write with a
-- lower epoch is refused, so a primary that lost its lease cannot overwrite what the backup
-- wrote after it. An empty city is a deployment without per-city endpoints: no fencing.
local fence_by, fence_ep = '', 0
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
-- Every audited write appends to the subject's audit stream through this function. Entries form
-- a hash chain: each names the hash of the one before (``prev``), its hash ``h`` is the SHA-1 of
-- its packed bytes, and the record keeps the latest hash (``rec.h``), so an altered, removed or
-- reordered entry breaks the chain (store.audit verifies it). The stream is never trimmed.
local function audit(stream, rec, entry)
  if fence_by ~= '' then entry.by = fence_by; entry.ep = fence_ep end
  entry.prev = rec.h or ''
  local packed = cmsgpack.pack(entry)
  local h = redis.sha1hex(packed)
  rec.h = h
  redis.call('XADD', stream, '*', 'e', packed, 'h', h)
end
-- A write resent with the same marker (its record, or its operation's marker) is answered from
-- what the marker holds and audited once. The marker is rewritten unchanged so that the caller's
-- WAIT covers the original write too. Returns the marker's value, or nil for a first send.
local function resent(marker)
  local done = redis.call('GET', marker)
  if done then redis.call('SET', marker, done, 'KEEPTTL') end
  return done
end
