#!lua flags=no-writes,allow-cross-slot-keys
-- The import's read: the records of a chunk's subjects on one primary, one call (GET by GET:
-- MGET refuses keys of several slots). The keys are arguments, so that the call declares only
-- the routing key; a key not on this primary (a slot moved) fails the call, and the import
-- resumes. Returns each record, or false for a subject that has none.
local routing_key = KEYS[1] -- the first record key (only routes the call)
-- ARGV[1...]: the record keys.
local out = {}
for i = 1, #ARGV do
  local record_key = ARGV[i]
  out[i] = redis.call('GET', record_key)
end
return out
