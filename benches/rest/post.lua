-- wrk script: POSTs the JSON bodies of the file $BODIES, one per line, in
-- turn, to $TARGET; counts answers that are not 2xx as errors.
local bodies = {}
for line in io.lines(os.getenv("BODIES")) do
  bodies[#bodies + 1] = line
end
local target = os.getenv("TARGET")
local headers = { ["Content-Type"] = "application/json" }

local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", target, headers, bodies[(counter % #bodies) + 1])
end

done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    "RESULT requests=%d seconds=%.1f rps=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f errors=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000, errors))
end
