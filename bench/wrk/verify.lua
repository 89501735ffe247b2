-- Verify (扫码/验码) under wrk: POST /v1/verify with the codes of a list, in turn.
--   wrk ... -s bench/wrk/verify.lua http://127.0.0.1:PORT -- CODES_FILE THREADS [BATCH [degraded]]
-- With BATCH > 1 each request is a POST /v1/verify/batch of BATCH codes. Bodies are built once,
-- in init; the key comes from $BENCH_AUTH. done() prints "status NNN: COUNT" lines, and with
-- "degraded" a "count degraded: N" line: the answers that rested on the signature alone.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local function item(code)
  return '{"code":"' .. code .. '","terminal":"bench","venue":"bench","city":320100}'
end

function init(args)
  local auth = os.getenv("BENCH_AUTH")
  local batch = tonumber(args[3]) or 1
  local headers = { ["Authorization"] = auth, ["Content-Type"] = "application/json" }
  local codes = {}
  for line in io.lines(args[1]) do
    if line ~= "" then
      codes[#codes + 1] = line
    end
  end
  assert(#codes > 0, "no codes in " .. args[1])
  requests = {}
  if batch <= 1 then
    for _, code in ipairs(codes) do
      requests[#requests + 1] = wrk.format("POST", "/v1/verify", headers, item(code))
    end
  else
    for start = 1, #codes, batch do
      local items = {}
      for i = start, math.min(start + batch - 1, #codes) do
        items[#items + 1] = item(codes[i])
      end
      local body = '{"items":[' .. table.concat(items, ",") .. ']}'
      requests[#requests + 1] = wrk.format("POST", "/v1/verify/batch", headers, body)
    end
  end
  local stride = tonumber(args[2]) or 1
  index = math.floor(#requests * id / stride)
  statuses = {}
  count_degraded = args[4] == "degraded"
  degraded = 0
end

function request()
  index = index % #requests + 1
  return requests[index]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if count_degraded and body:find('"degraded":%s*true') then
    degraded = degraded + 1
  end
end

function done(summary, latency, requests)
  local total = {}
  local degraded_total, counted = 0, false
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
    if thread:get("count_degraded") then
      counted = true
      degraded_total = degraded_total + thread:get("degraded")
    end
  end
  for status, count in pairs(total) do
    io.write(string.format("status %d: %d\n", status, count))
  end
  if counted then
    io.write(string.format("count degraded: %d\n", degraded_total))
  end
end
