-- Display (亮码) under wrk: GET each path of a list in turn, the list read once per thread.
--   wrk ... -s bench/wrk/display.lua http://127.0.0.1:PORT -- PATHS_FILE THREADS
-- PATHS_FILE holds one path a line (/v1/subjects/<subject>/code); each thread starts at its own
-- share of the list, so the threads do not walk in step. The key comes from $BENCH_AUTH, so it
-- never shows in a process list. Requests are formatted once, in init, not per request.

local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  local auth = os.getenv("BENCH_AUTH")
  requests = {}
  for path in io.lines(args[1]) do
    if path ~= "" then
      requests[#requests + 1] = wrk.format("GET", path, { ["Authorization"] = auth })
    end
  end
  assert(#requests > 0, "no paths in " .. args[1])
  local threads = tonumber(args[2]) or 1
  index = math.floor(#requests * id / threads)
end

function request()
  index = index % #requests + 1
  return requests[index]
end
