-- One small chat completion per request; BENCH_KEY is the bearer key. Prints one RESULT line for the harness:
-- requests, duration (us), P50 (us), P99 (us), non-2xx answers, socket errors.
wrk.method = "POST"
wrk.body = '{"model":"' .. (os.getenv("BENCH_MODEL") or "chat-model") ..
           '","messages":[{"role":"user","content":"Hi"}],"max_tokens":8}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "none")

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
