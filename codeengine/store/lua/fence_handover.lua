-- A planned switch by ops: only the hold is set here. The current holder hands the lease over
-- at its next beat (a dead holder's lease runs out).
-- Returns {owner, epoch, lease ttl ms, held role}.
-- #include lease.lua
local to = ARGV[1]                 -- the role that must hold the lease
local hold_ms = tonumber(ARGV[2])  -- how long (0 lifts the hold: the tick's rules decide again)
local lease_ms = tonumber(ARGV[3]) -- the lease's length (unused)
if hold_ms > 0 then
  redis.call('SET', hold_key, to, 'PX', hold_ms)
else
  redis.call('DEL', hold_key)
end
return answer()
