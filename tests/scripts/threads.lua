-- Per-thread state through setup/thread:set, response() counting status codes, done() printing
-- percentiles and what each thread did (read back with thread:get).
local threads = {}
local next_id = 1

function setup(thread)
  thread:set("id", next_id)
  thread:set("prefix", { name = "t" .. next_id })
  table.insert(threads, thread)
  next_id = next_id + 1
end

function init(args)
  sent = 0
  statuses = {}
  label = args[1] or "none"
end

function request()
  sent = sent + 1
  return wrk.format("GET", "/thread/" .. id .. "/" .. sent,
    { ["X-Thread"] = prefix.name, ["X-Label"] = label })
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if headers["X-Echo"] ~= "yes" or body ~= "hello" then
    error("unexpected response headers or body")
  end
end

function done(summary, latency, requests)
  for _, p in ipairs({ 50, 90, 99 }) do
    io.write(string.format("lua-p%d=%d\n", p, latency:percentile(p)))
  end
  io.write(string.format("lua-summary requests=%d count=%d min=%d max=%d\n",
    summary.requests, #latency, latency.min, latency.max))
  for _, t in ipairs(threads) do
    local st = t:get("statuses") or {}
    io.write(string.format("lua-thread id=%d sent=%d s200=%d s404=%d\n",
      t:get("id"), t:get("sent") or -1, st["200"] or 0, st["404"] or 0))
  end
end
