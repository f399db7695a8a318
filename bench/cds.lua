-- wrk script: the CDS Hooks patient-view call, or a plain FHIR read, for the bench patients.
-- Env: BENCH_MODE ("read": GET /fhir/Patient/<id>; "hook": POST the patient-view call),
-- BENCH_IDS (comma-separated Patient ids), BENCH_BODIES (a file: one hook body per line, in
-- the order of BENCH_IDS), BENCH_TOKENS (a file: one signed EHR JWT per line, each used once;
-- absent: calls go without a JWT), BENCH_THREADS.
local mode = os.getenv("BENCH_MODE") or "read"
local ids = {}
for id in string.gmatch(os.getenv("BENCH_IDS") or "", "[^,]+") do ids[#ids + 1] = id end
local threads = {}
local counter, tid, nthreads = 0, 0, 1
local bodies, tokens = {}, {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local function lines(path, keep)
  local found = {}
  if path == nil or path == "" then return found end
  local k = 0
  for line in io.lines(path) do
    if keep(k) then found[#found + 1] = line end
    k = k + 1
  end
  return found
end

function init(args)
  tid = tonumber(wrk.thread:get("tid")) or 0
  nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
  bodies = lines(os.getenv("BENCH_BODIES"), function(k) return true end)
  -- Each thread takes every nthreads-th token, so no token is sent twice.
  tokens = lines(os.getenv("BENCH_TOKENS"), function(k) return k % nthreads == tid end)
end

function request()
  local g = counter * nthreads + tid
  counter = counter + 1
  local k = (g % #ids) + 1
  if mode == "read" then
    return wrk.format("GET", "/fhir/Patient/" .. ids[k], {["Accept"] = "application/fhir+json"})
  end
  local headers = {["Content-Type"] = "application/json"}
  if #tokens > 0 then headers["Authorization"] = "Bearer " .. tokens[counter] end
  return wrk.format("POST", "/cds-services/flexion-patient-view", headers, bodies[k])
end

local errors = 0
function response(status, headers, body)
  if status ~= 200 then
    errors = errors + 1
    if errors <= 3 then io.stderr:write("non-200: " .. status .. " " .. string.sub(body, 1, 300) .. "\n") end
  end
end
