-- request() fails on its 20th call (line 5), well into the run.
local calls = 0
function request()
  calls = calls + 1
  if calls >= 20 then error("request number " .. calls .. " failed") end
  return wrk.format(nil, "/ok")
end
