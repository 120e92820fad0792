-- aefm-load's Lua prelude: the parts of the wrk scripting API that are plain Lua.
--
-- Run once in every state (main and per thread) before the user's script, with the `wrk` table
-- already holding the target fields and the native functions (lookup, connect, time_us), and with
-- the bundled socket module passed as the chunk's first argument. Written for aefm-load; it follows
-- the behaviour described in wrk2's SCRIPTING notes, not wrk's source.

local builtin_socket = ...
local wrk = wrk

-- wrk.format(method, path, headers, body): one HTTP/1.1 request as a string. Nil arguments fall
-- back to the wrk fields; Host is copied from wrk.headers into the caller's table when missing;
-- Content-Length follows the body (removed when there is none). The path is sent as given, so an
-- absolute URL becomes an absolute-form request target.
function wrk.format(method, path, headers, body)
  method = method or wrk.method
  path = path or wrk.path
  headers = headers or wrk.headers
  body = body or wrk.body
  if headers["Host"] == nil then
    headers["Host"] = wrk.headers["Host"]
  end
  if body ~= nil then
    headers["Content-Length"] = string.len(body)
  else
    headers["Content-Length"] = nil
  end
  local parts = { method, " ", path, " HTTP/1.1\r\n" }
  local n = 4
  for name, value in pairs(headers) do
    parts[n + 1] = name
    parts[n + 2] = ": "
    parts[n + 3] = value
    parts[n + 4] = "\r\n"
    n = n + 4
  end
  parts[n + 1] = "\r\n"
  parts[n + 2] = body or ""
  return table.concat(parts)
end

-- wrk.init(args): fills in Host from the target (unless -H or the script set one), calls the
-- script's init(args) when there is one, then freezes the default request that wrk.request()
-- returns when the script has no request() of its own.
function wrk.init(args)
  if wrk.headers["Host"] == nil then
    local host = wrk.host
    if host:find(":", 1, true) then
      host = "[" .. host .. "]"
    end
    if wrk.port ~= nil then
      host = host .. ":" .. wrk.port
    end
    wrk.headers["Host"] = host
  end
  if type(init) == "function" then
    init(args)
  end
  local req = wrk.format()
  wrk.request = function()
    return req
  end
end

-- The bundled `socket` module is a fallback loader placed after the LUA_PATH/LUA_CPATH loaders,
-- so an installed luasocket wins when it is on the path, and scripts still run without one.
local loaders = package.loaders or package.searchers
loaders[#loaders + 1] = function(name)
  if name == "socket" then
    return function()
      return builtin_socket
    end
  end
  return "\n\tno bundled module '" .. tostring(name) .. "' in aefm-load"
end

-- Old luasocket builds set the global `socket` on require; some scripts rely on that
-- (a bare `require "socket"` followed by `socket.gettime()`), so `require "socket"` always does.
local plain_require = require
function require(name)
  local module = plain_require(name)
  if name == "socket" and rawget(_G, "socket") == nil then
    rawset(_G, "socket", module)
  end
  return module
end
