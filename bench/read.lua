-- wrk script: GET one stored resource per request, cycling through BENCH_PATHS (comma-separated
-- paths, e.g. /fhir/Observation/<id>). Anything but 200 is counted; done() prints "non-200: N".
-- Env: BENCH_PATHS, BENCH_AUTHORIZATION (an Authorization header value, sent when set).
local paths = {}
for path in string.gmatch(os.getenv("BENCH_PATHS") or "", "[^,]+") do paths[#paths + 1] = path end
local threads = {}
local counter, errors = 0, 0
local headers = {["Accept"] = "application/fhir+json"}
if os.getenv("BENCH_AUTHORIZATION") then headers["Authorization"] = os.getenv("BENCH_AUTHORIZATION") end

function setup(thread)
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  return wrk.format("GET", paths[(counter % #paths) + 1], headers)
end

function response(status, hdrs, body)
  if status ~= 200 then
    errors = errors + 1
    if errors <= 3 then io.stderr:write("non-200: " .. status .. " " .. string.sub(body, 1, 300) .. "\n") end
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + (tonumber(thread:get("errors")) or 0) end
  io.write(string.format("non-200: %d\n", total))
end
