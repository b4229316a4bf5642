-- wrk script for the `compare` scenario: POST /comparisons/ for a random pair of
-- distinct entities with a random winner, as bench/loadgen.py's `compare` does.
--
-- The entity ids come from a file with one id per line, named by the environment
-- variable COMPERE_WRK_IDS (bench/wrk_compare.py writes it). When done, the script
-- prints one JSON line (prefixed "WRK_JSON ") with counts and latency percentiles.

local ids = {}

local function load_ids()
  local path = os.getenv("COMPERE_WRK_IDS")
  if not path then
    error("COMPERE_WRK_IDS must name a file of entity ids, one per line")
  end
  for line in io.lines(path) do
    local id = tonumber(line)
    if id then
      ids[#ids + 1] = id
    end
  end
  if #ids < 2 then
    error("need at least two entity ids in " .. path)
  end
end

local headers = { ["Content-Type"] = "application/json" }

function init(args)
  load_ids()
  -- Each wrk thread has its own Lua state; seed each one differently.
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
end

function request()
  local count = #ids
  local i = math.random(count)
  local j = math.random(count - 1)
  if j >= i then
    j = j + 1
  end
  local a, b = ids[i], ids[j]
  local winner = (math.random(2) == 1) and a or b
  local body = string.format('{"entity1_id":%d,"entity2_id":%d,"selected_entity_id":%d}', a, b, winner)
  return wrk.format("POST", "/comparisons/", headers, body)
end

function done(summary, latency, requests)
  local errors = summary.errors
  local failed = errors.connect + errors.read + errors.write + errors.status + errors.timeout
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"failed":%d,"status_errors":%d,'
      .. '"socket_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, failed, errors.status,
    errors.connect + errors.read + errors.write, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max
  ))
end
