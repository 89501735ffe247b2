-- One call appends a whole batch of entries to a city's log stream (its scan log or its change
-- log): one command per city and batch instead of one per entry. A batch whose marker exists
-- was written before (its answer was lost): nothing is written again. Entries older than
-- max_age_ms are trimmed (approximately, whole stream nodes) as the batch is added: the log's
-- consumer trims what it acknowledged itself, so this bounds memory only while the consumer is
-- down or far behind. Returns how many entries it appended.
local log_key = KEYS[1]    -- the city's log stream
local marker_key = KEYS[2] -- the batch's marker
local max_age_ms = tonumber(ARGV[1]) -- entries older than this may be trimmed
-- ARGV[2...]: the entries, each packed (codeengine.code.scans.ScanEntry.pack,
-- codeengine.code.changes.ChangeEntry.pack) as the value of the entry's one field, "e".
if #ARGV < 2 then return 0 end
if redis.call('SET', marker_key, '1', 'NX', 'EX', 3600) == false then return 0 end
-- Stream ids are the server's milliseconds, so the oldest id to keep is the server's time too.
local now = redis.call('TIME')
local min_id = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - max_age_ms
if min_id < 0 then min_id = 0 end
min_id = string.format('%d', min_id)
for i = 2, #ARGV do
  local entry = ARGV[i]
  if i == 2 then
    -- One trim per batch: each further XADD of the batch would find nothing more to trim.
    redis.call('XADD', log_key, 'MINID', '~', min_id, '*', 'e', entry)
  else
    redis.call('XADD', log_key, '*', 'e', entry)
  end
end
return #ARGV - 1
