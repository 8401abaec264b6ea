-- wrk script for loadtest/overload.py: POSTs one body and times every response by status.
-- args: body file, timeout-ms header value ("" = none), pacing delay in ms per connection (0 = closed loop).
-- The send time (CLOCK_MONOTONIC, µs) rides in x-request-id, which the service echoes, so admitted (200) and
-- refused (503/504) latencies are kept apart (wrk's own histogram mixes them). Thread tables are copied to the
-- main thread by wrk, which only works for flat tables of strings/numbers: latencies are flushed as strings
-- under keys "<status>#<n>" every 32 samples (so at most 31 samples per status and thread are not in the
-- percentiles; counts are exact).
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } timespec;
int clock_gettime(int clk_id, timespec *tp);
]]
local ts = ffi.new("timespec[1]")
local function now_us()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts[0].tv_sec) * 1000000 + math.floor(tonumber(ts[0].tv_nsec) / 1000)
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  body = f:read("*a")
  f:close()
  timeout_ms = args[2]
  local pace = tonumber(args[3] or "0") or 0
  if pace > 0 then  -- pacing: each connection waits ~`pace` ms after a response (offered load ~ connections / pace)
    -- exponential pauses (mean `pace`), not a constant: with a constant pause the connections stay in lockstep and
    -- the "load" is a burst of every connection at once followed by silence (measured: p50 82 ms at 1/3 capacity)
    math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
    delay = function() return math.floor(-pace * math.log(1 - math.random()) + 0.5) end
  end
  counts, chunks, buf, nchunks = {}, {}, {}, 0
end

function request()
  local headers = { ["content-type"] = "application/json", ["x-request-id"] = tostring(now_us()) }
  if timeout_ms and timeout_ms ~= "" then headers["timeout-ms"] = timeout_ms end
  return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
  local key = tostring(status)
  counts[key] = (counts[key] or 0) + 1
  local sent = tonumber(headers["x-request-id"])
  if not sent then return end
  local b = buf[key]
  if not b then b = {}; buf[key] = b end
  b[#b + 1] = now_us() - sent
  if #b >= 32 then
    nchunks = nchunks + 1
    chunks[key .. "#" .. nchunks] = table.concat(b, ",")
    buf[key] = {}
  end
end

function done(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    for key, n in pairs(t:get("counts")) do
      all[key] = all[key] or { n = 0, lat = {} }
      all[key].n = all[key].n + n
    end
    for ck, text in pairs(t:get("chunks")) do
      local key = string.match(ck, "^(%d+)#")
      for v in string.gmatch(text, "%d+") do table.insert(all[key].lat, tonumber(v)) end
    end
  end
  local out = io.open(os.getenv("OVERLOAD_OUT") or "/dev/stderr", "w")
  out:write(string.format('{"duration_us": %d, "socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, "status": {',
    summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
  local first = true
  for key, a in pairs(all) do
    table.sort(a.lat)
    local function pct(p) if #a.lat == 0 then return -1 end return a.lat[math.max(1, math.ceil(#a.lat * p))] end
    if not first then out:write(",") end
    first = false
    out:write(string.format('"%s": {"n": %d, "sampled": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}',
      key, a.n, #a.lat, pct(0.5), pct(0.9), pct(0.99), pct(1.0)))
  end
  out:write("}}\n")
  out:close()
end
