-- response() fails on the first response (line 3).
function response(status, headers, body)
  local n = nil + status
end
