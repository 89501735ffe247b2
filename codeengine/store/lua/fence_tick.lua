-- One endpoint's periodic beat. The holder renews; a free lease goes to the primary, or to the
-- backup when no primary is beating (it died) or a planned hold names it. A backup that holds
-- the lease hands it back once the primary has been beating for the handback period
-- (hysteresis), unless a hold keeps it.
-- Returns {owner, epoch, lease ttl ms, held role}.
-- #include lease.lua
local role = ARGV[1]                   -- 'primary' or 'backup'
local lease_ms = tonumber(ARGV[2])     -- the lease's length
local handback_ms = tonumber(ARGV[3])  -- how long the primary beats before a handback
-- Whether a backup may take a free lease ('1' once it has run for a lease period: at a cold
-- start the primary's first beat may not have come yet).
local may_take = ARGV[4]
local hold = redis.call('GET', hold_key)
if role == 'primary' then
  if redis.call('SET', primary_beat_key, now, 'NX', 'PX', lease_ms) == false then
    redis.call('PEXPIRE', primary_beat_key, lease_ms)
  end
else
  redis.call('SET', backup_beat_key, now, 'PX', lease_ms)
end
-- A hold only counts for an endpoint that is beating: a plan never leaves a city without a
-- writer because the endpoint it named has died since.
local function beating(r)
  return redis.call('EXISTS', r == 'primary' and primary_beat_key or backup_beat_key) == 1
end
local owner = redis.call('HGET', lease_key, 'owner')
if owner == role then
  if hold and hold ~= role and beating(hold) then
    grant(hold, owner, 'planned', lease_ms)
  elseif hold and hold ~= role then
    redis.call('PEXPIRE', lease_key, lease_ms)
  elseif role == 'backup' and not hold then
    local since = redis.call('GET', primary_beat_key)
    if since and now - tonumber(since) >= handback_ms then
      grant('primary', 'backup', 'handback', lease_ms)
    else
      redis.call('PEXPIRE', lease_key, lease_ms)
    end
  else
    redis.call('PEXPIRE', lease_key, lease_ms)
  end
elseif not owner then
  local last = redis.call('XREVRANGE', switches_key, '+', '-', 'COUNT', 1)
  local before = nil
  if #last > 0 then
    local f = last[1][2]
    for i = 1, #f, 2 do if f[i] == 'to' then before = f[i + 1] end end
  end
  local why = before and 'lease_expired' or 'start'
  if hold and hold ~= role and beating(hold) then
    -- Free, but held for the other endpoint, which is alive: it takes it at its next beat.
  elseif hold == role or (hold and (role == 'primary' or may_take == '1')) then
    grant(role, before, why, lease_ms)
  elseif role == 'primary' then
    grant(role, before, why, lease_ms)
  elseif may_take == '1' and redis.call('EXISTS', primary_beat_key) == 0 then
    grant(role, before, why, lease_ms)
  end
end
-- A lease held by the other endpoint is never taken here, even for a planned hold: the holder
-- hands it over in its own beat, so it stops believing in its lease as the other gets it.
return answer()
