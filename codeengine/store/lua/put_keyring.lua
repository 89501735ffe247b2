-- Compare-and-set of the keyring's version, with the keyring and its trust list.
-- Returns {1, new version} or {-2, current version} when the expected version is stale.
local keyring_key = KEYS[1] -- the sealed keyring
local trust_key = KEYS[2]   -- the public trust list
local version_key = KEYS[3] -- the keyring's version
local expected = ARGV[1]    -- the version the caller saw (0: none yet)
local sealed = ARGV[2]      -- the new sealed keyring
local version = ARGV[3]     -- its version
local trust = ARGV[4]       -- the trust list JSON
local current = tonumber(redis.call('GET', version_key) or '0')
if current ~= tonumber(expected) then return {-2, current} end
redis.call('SET', keyring_key, sealed)
redis.call('SET', trust_key, trust)
redis.call('SET', version_key, version)
return {1, tonumber(version)}
