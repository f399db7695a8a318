-- wrk script: POST one new pain-score Observation (LOINC 72514-3, 0-10 {score}) per request to
-- /fhir/Observation. Request g (unique across threads) is one minute after request g - 1, with
-- score g % 11. Anything but 201 is counted; done() prints "non-201: N" for the driver to check.
-- Env: BENCH_PATIENT (Patient id the Observations are about), BENCH_BASE (epoch s),
-- BENCH_THREADS (wrk -t, so request numbers do not collide between threads), BENCH_AUTHORIZATION
-- (an Authorization header value, sent when set).
local patient = os.getenv("BENCH_PATIENT") or "example"
local base = tonumber(os.getenv("BENCH_BASE") or "1577836800")
local threads = {}
local counter, tid, nthreads, errors = 0, 0, 1, 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  tid = tonumber(wrk.thread:get("tid")) or 0
  nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
end

local tpl = '{"resourceType":"Observation","status":"final",'
  .. '"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"survey"}]}],'
  .. '"code":{"coding":[{"system":"http://loinc.org","code":"72514-3",'
  .. '"display":"Pain severity - 0-10 verbal numeric rating [Score] - Reported"}]},'
  .. '"subject":{"reference":"Patient/%s"},"effectiveDateTime":"%s",'
  .. '"valueQuantity":{"value":%d,"unit":"{score}","system":"http://unitsofmeasure.org","code":"{score}"}}'
local headers = {["Content-Type"] = "application/fhir+json"}
if os.getenv("BENCH_AUTHORIZATION") then headers["Authorization"] = os.getenv("BENCH_AUTHORIZATION") end

function request()
  local g = counter * nthreads + tid
  counter = counter + 1
  local body = string.format(tpl, patient, os.date("!%Y-%m-%dT%H:%M:%SZ", base + g * 60), g % 11)
  return wrk.format("POST", "/fhir/Observation", headers, body)
end

function response(status, hdrs, body)
  if status ~= 201 then
    errors = errors + 1
    if errors <= 3 then io.stderr:write("non-201: " .. status .. " " .. string.sub(body, 1, 300) .. "\n") end
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + (tonumber(thread:get("errors")) or 0) end
  io.write(string.format("non-201: %d\n", total))
end
