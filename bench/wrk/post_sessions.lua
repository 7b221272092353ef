-- POST /api/v1/sessions/: each request creates a session, and with it one audit_logs row.
local key = os.getenv("BENCH_KEY")
local headers = {["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json"}
local body = '{"agent_id": "bench-agent", "title": "benchmark session"}'

request = function()
  return wrk.format("POST", "/api/v1/sessions/", headers, body)
end
