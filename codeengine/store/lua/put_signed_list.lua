-- Compare-and-set of a signed list (the trust or the revocation list, COSE_Sign1 bytes): a
-- hash with the list's sequence (n) and its document (d), so that of two issuers signing at
-- once only one stores, and the sequence never goes back.
-- Returns {1, new sequence} or {-2, current sequence} when the expected one is stale.
local list_key = KEYS[1]    -- the signed list
local expected = ARGV[1]    -- the sequence the caller saw (0: none yet)
local seq = ARGV[2]         -- the new list's sequence
local document = ARGV[3]    -- the new list
local current = tonumber(redis.call('HGET', list_key, 'n') or '0')
if current ~= tonumber(expected) then return {-2, current} end
if tonumber(seq) <= current then return {-2, current} end
redis.call('HSET', list_key, 'n', seq, 'd', document)
return {1, tonumber(seq)}
