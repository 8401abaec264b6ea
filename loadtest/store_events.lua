-- wrk script for loadtest/store_events.py: POSTs /v1/events for random users of N (args[1] = "events") or
-- /v1/recommend for random users of N (args[1] = "recommend"); args[2] = N, args[3] = item ids, comma-separated.
function init(args)
  mode, users = args[1], tonumber(args[2])
  items = {}
  for it in string.gmatch(args[3], "[^,]+") do table.insert(items, it) end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  kinds = { "view", "cart", "purchase" }
end

function request()
  local user = "load-" .. math.random(1, users)
  local body
  if mode == "events" then
    body = string.format('{"user_id":"%s","item_id":"%s","type":"%s"}', user, items[math.random(1, #items)],
      kinds[math.random(1, 3)])
    return wrk.format("POST", "/v1/events", { ["content-type"] = "application/json" }, body)
  end
  body = string.format('{"user_id":"%s","k":10}', user)
  return wrk.format("POST", "/v1/recommend", { ["content-type"] = "application/json" }, body)
end

function done(summary, latency, requests)
  io.write(string.format("RESULT %s n=%d errors=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n", mode,
    summary.requests, summary.errors.status + summary.errors.timeout, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
