-- The write lease of a city (codeengine.store.fence), shared by its scripts (expanded where a
-- script says "#include lease.lua"): their keys, the server's time and the grant. Times are the
-- server's clock (TIME), so endpoints on different machines agree.
local lease_key = KEYS[1]        -- the lease (hash: owner, epoch, since; expires)
local epoch_key = KEYS[2]        -- the epoch counter (never expires)
local switches_key = KEYS[3]     -- the switch log (stream)
local primary_beat_key = KEYS[4] -- the primary's heartbeat (its first beat's time; expires)
local hold_key = KEYS[5]         -- the planned hold (the role that must hold it; expires)
local backup_beat_key = KEYS[6]  -- the backup's heartbeat (expires)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function grant(to, from, why, lease_ms)
  local epoch = redis.call('INCR', epoch_key)
  redis.call('DEL', lease_key)
  redis.call('HSET', lease_key, 'owner', to, 'epoch', epoch, 'since', now)
  redis.call('PEXPIRE', lease_key, lease_ms)
  redis.call('XADD', switches_key, 'MAXLEN', '~', 200, '*', 'at', now, 'from', from or '',
             'to', to, 'epoch', epoch, 'why', why)
  return epoch
end
local function answer()
  local h = redis.call('HMGET', lease_key, 'owner', 'epoch')
  return {h[1] or '', tonumber(h[2] or '0'), redis.call('PTTL', lease_key),
          redis.call('GET', hold_key) or ''}
end
