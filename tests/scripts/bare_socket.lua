-- A bare `require "socket"` that then uses the global `socket` (old luasocket behaviour).
require "socket"
math.randomseed(socket.gettime() * 1000)

function request()
  return wrk.format("GET", "/bare/" .. math.floor(socket.gettime()), { ["X-Version"] = socket._VERSION })
end
