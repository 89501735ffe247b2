-- Generate (生码) under wrk: POST /v1/subjects with the resident IDs of a list, in turn.
--   wrk ... -s bench/wrk/generate.lua http://127.0.0.1:PORT -- IDS_FILE THREADS
-- Thread i of THREADS posts IDs i+1, i+1+THREADS, ...: no two threads post the same ID, so a list
-- of never-seen IDs gives only new subjects (201) until it runs out; then it wraps and the rest
-- are repeats (200). done() prints one "status NNN: COUNT" line per HTTP status, which the
-- harness reads. The key comes from $BENCH_AUTH.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  auth = os.getenv("BENCH_AUTH")
  ids = {}
  for line in io.lines(args[1]) do
    if line ~= "" then
      ids[#ids + 1] = line
    end
  end
  assert(#ids > 0, "no IDs in " .. args[1])
  stride = tonumber(args[2]) or 1
  index = id + 1
  statuses = {}
end

function request()
  if index > #ids then
    index = (index - 1) % #ids + 1
  end
  local body = '{"kind":"person","id":"' .. ids[index] .. '","city":320100}'
  index = index + stride
  local headers = { ["Authorization"] = auth, ["Content-Type"] = "application/json" }
  return wrk.format("POST", "/v1/subjects", headers, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
  end
  for status, count in pairs(total) do
    io.write(string.format("status %d: %d\n", status, count))
  end
end
