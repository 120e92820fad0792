-- Mixed workload for aefm-load's end-to-end tests (written for AEFM; not from any benchmark suite).
-- Three request types by ratio: 60 % reads (GET, absolute-URL target), 30 % form posts, 10 % JSON
-- orders, each with a random id. Seeds the RNG from socket.gettime(), like the DeathStarBench scripts.
socket = require "socket"
math.randomseed(socket.gettime() * 1000)

local max_user = tonumber(os.getenv("AEFM_TEST_MAX_USER") or "500")

-- Extending the string library, as some real scripts do.
function string.alnum(n)
  local chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
  local out = {}
  for i = 1, n do
    local k = math.random(#chars)
    out[i] = chars:sub(k, k)
  end
  return table.concat(out)
end

local function read()
  local user = math.random(1, max_user)
  local start = math.random(0, 100)
  local path = "http://localhost:8080/api/timeline/read?user_id=" .. user ..
    "&start=" .. start .. "&stop=" .. tostring(start + 10)
  return wrk.format("GET", path, { ["X-Kind"] = "read" }, nil)
end

local function compose()
  local user = math.random(1, max_user)
  local body = "username=user_" .. user .. "&user_id=" .. user ..
    "&text=" .. form_encode("hi @user_" .. math.random(max_user) .. " " .. string.alnum(32)) ..
    "&post_type=0"
  local headers = {}
  headers["Content-Type"] = "application/x-www-form-urlencoded"
  headers["X-Kind"] = "compose"
  return wrk.format("POST", "/api/post/compose", headers, body)
end

local function order()
  local id = math.random(1, 1000)
  local body = string.format('{"order_id":%d,"item":"%s","quantity":%d}', id, string.alnum(8), math.random(5))
  return wrk.format("POST", "/api/order", { ["Content-Type"] = "application/json", ["X-Kind"] = "order" }, body)
end

request = function()
  local coin = math.random()
  if coin < 0.6 then
    return read()
  elseif coin < 0.9 then
    return compose()
  end
  return order()
end

-- Defined after request(), which uses it: globals resolve at call time.
function form_encode(s)
  s = s:gsub("[^%w%.%- ]", function(c) return string.format("%%%02X", string.byte(c)) end)
  return (s:gsub(" ", "+"))
end
