-- One call appends a whole batch of scans to a city's log: one command per city per flush
-- instead of one per scan. A batch whose marker exists was written before (its answer was
-- lost): nothing is written again. Returns how many entries it appended.
local log_key = KEYS[1]    -- the city's scan log stream
local marker_key = KEYS[2] -- the batch's marker
local max_len = ARGV[1]    -- the stream's approximate maximum length
-- ARGV[2...]: the entries, each packed (codeengine.code.scans.ScanEntry.pack) as the value of
-- the entry's one field, "e".
if redis.call('SET', marker_key, '1', 'NX', 'EX', 3600) == false then return 0 end
for i = 2, #ARGV do
  local entry = ARGV[i]
  redis.call('XADD', log_key, 'MAXLEN', '~', max_len, '*', 'e', entry)
end
return #ARGV - 1
