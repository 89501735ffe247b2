-- Adds the member (idempotent) and drops entries that no longer matter (expired codes).
-- Returns the set's size.
local set_key = KEYS[1]      -- a revocation set
local member = ARGV[1]       -- what is revoked
local score = ARGV[2]        -- its score (until when, or since when)
local prune_below = ARGV[3]  -- entries scored below it are dropped ('' for no pruning)
redis.call('ZADD', set_key, score, member)
if prune_below ~= '' then redis.call('ZREMRANGEBYSCORE', set_key, '-inf', '(' .. prune_below) end
return redis.call('ZCARD', set_key)
