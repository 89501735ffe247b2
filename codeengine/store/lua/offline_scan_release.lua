-- An offline scan's claim, given back by the request that made it when that request failed
-- before it logged the scan: the terminal sends the scan again, and the claim must not call it
-- a duplicate. The claim's value is the request's random token, so a request never frees a
-- claim another request (this terminal's earlier send, or a later one) holds.
-- Returns {1} released, {0} not this request's (or gone).
local claim_key = KEYS[1] -- the scan id's claim
local token = ARGV[1]     -- the token of the request that claimed it
if redis.call('GET', claim_key) == token then
  redis.call('DEL', claim_key)
  return {1}
end
return {0}
