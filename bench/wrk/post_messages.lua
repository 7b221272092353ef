-- POST /api/v1/sessions/<id>/messages/ spread over the session ids listed (one per line) in the
-- file named by BENCH_SESSION_IDS; with a single id, every request hits one hot session.
local ids = {}
local path = os.getenv("BENCH_SESSION_IDS")
for line in io.lines(path) do
  if #line > 0 then ids[#ids + 1] = line end
end
local key = os.getenv("BENCH_KEY")
local body = '{"role": "user", "content": "benchmark message with a realistic, modest length of text", "token_count": 12}'
local headers = {
  ["Authorization"] = "Bearer " .. key,
  ["Content-Type"] = "application/json",
}

math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))

request = function()
  local id = ids[math.random(#ids)]
  return wrk.format("POST", "/api/v1/sessions/" .. id .. "/messages/", headers, body)
end
