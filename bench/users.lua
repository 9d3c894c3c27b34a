-- wrk script: every request a random user out of BENCH_USERS (user<i> / pass<i>), so caches
-- and connection reuse see realistic, distinct logins. BENCH_USERS=0: the bare route.
local users = tonumber(os.getenv("BENCH_USERS") or "1000")
local path = os.getenv("BENCH_PATH") or "/provision"
local fixed_user = os.getenv("BENCH_USER")
local fixed_password = os.getenv("BENCH_PASSWORD")
local think_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")

math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))

request = function()
  if users == 0 then
    return wrk.format("GET", path)
  end
  if fixed_user then
    return wrk.format("GET", path .. "?user=" .. fixed_user .. "&password=" .. fixed_password
                      .. "&version=1.14")
  end
  local i = math.random(1, users)
  return wrk.format("GET", path .. "?user=user" .. i .. "&password=pass" .. i .. "&version=1.14")
end

-- Think time between a connection's requests: paces the load below saturation.
if think_ms > 0 then
  delay = function()
    return think_ms
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"socket_errors": %d, "non_2xx": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
