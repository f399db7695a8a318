-- wrk script: POST one new Flexion in Lying session per request.
-- Request g (unique across threads) goes to CarePlan g % P, 6 hours after its previous one
-- (4 sessions a day, the protocol's dose),
-- so every CarePlan sees its sessions in time order and no identifier repeats.
-- Env: BENCH_PLANS (comma-separated CarePlan ids), BENCH_PATIENT_PREFIX, BENCH_BASE (epoch s),
-- BENCH_PATH ("submit" for $submit-session, "echo" for the bare endpoint), BENCH_AUTHORIZATION
-- (an Authorization header value, sent when set).
local plans = {}
for id in string.gmatch(os.getenv("BENCH_PLANS") or "", "[^,]+") do plans[#plans + 1] = id end
local base = tonumber(os.getenv("BENCH_BASE") or "1577836800")
local mode = os.getenv("BENCH_PATH") or "submit"
local threads = {}
local counter, tid, nthreads = 0, 0, 1

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  tid = tonumber(wrk.thread:get("tid")) or 0
  nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
end

local function iso(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", t) end

local rep_tpl = '{"fullUrl":"urn:uuid:00000000-0000-4000-8000-%012d","resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"72514-3"}]},"subject":{"reference":"Patient/%s"},"effectiveDateTime":"%s","valueQuantity":{"value":%d,"unit":"{score}","system":"http://unitsofmeasure.org","code":"{score}"},"component":[{"code":{"coding":[{"system":"https://fhir.flexion-careplan.org/CodeSystem/flexion-careplan","code":"repetition-index"}]},"valueInteger":%d}]}}'

local cs = "https://fhir.flexion-careplan.org/CodeSystem/flexion-careplan"

function request()
  local g = counter * nthreads + tid
  counter = counter + 1
  local plan = plans[(g % #plans) + 1]
  local patient = os.getenv("BENCH_PATIENT_PREFIX") .. tostring(g % #plans)
  local start = base + math.floor(g / #plans) * 21600
  local reps, members = {}, {}
  local values = {3, 2, 1, 1, 0}
  for i, v in ipairs(values) do
    reps[#reps + 1] = string.format(rep_tpl, i, patient, iso(start + i * 60), v, i)
    members[#members + 1] = string.format('{"reference":"urn:uuid:00000000-0000-4000-8000-%012d"}', i)
  end
  local panel = string.format(
    '{"fullUrl":"urn:uuid:00000000-0000-4000-8000-999999999999","resource":{"resourceType":"Observation","identifier":[{"system":"https://fhir.flexion-careplan.org/sid/session","value":"bench-%d-%d"}],"status":"final","code":{"coding":[{"system":"%s","code":"flexion-session"}]},"subject":{"reference":"Patient/%s"},"basedOn":[{"reference":"CarePlan/%s"}],"effectivePeriod":{"start":"%s","end":"%s"},"hasMember":[%s],"component":[{"code":{"coding":[{"system":"%s","code":"extension-followed"}]},"valueBoolean":true},{"code":{"coding":[{"system":"%s","code":"pain-location-start"}]},"valueCodeableConcept":{"coding":[{"system":"%s","code":"central"}]}},{"code":{"coding":[{"system":"%s","code":"pain-location-end"}]},"valueCodeableConcept":{"coding":[{"system":"%s","code":"central"}]}}]}}',
    base, g, cs, patient, plan, iso(start), iso(start + 600), table.concat(members, ","), cs, cs, cs, cs, cs)
  local body = '{"resourceType":"Bundle","type":"collection","entry":[' .. panel .. "," .. table.concat(reps, ",") .. "]}"
  local path = "/echo"
  if mode == "submit" then path = "/fhir/CarePlan/" .. plan .. "/$submit-session" end
  local headers = {["Content-Type"] = "application/fhir+json"}
  if os.getenv("BENCH_AUTHORIZATION") then headers["Authorization"] = os.getenv("BENCH_AUTHORIZATION") end
  return wrk.format("POST", path, headers, body)
end

local errors = 0
function response(status, headers, body)
  if status ~= 200 then
    errors = errors + 1
    if errors <= 3 then io.stderr:write("non-200: " .. status .. " " .. string.sub(body, 1, 300) .. "\n") end
  end
end
