-- request() (line 2) returns something that is not an HTTP request.
function request()
  return "this is not HTTP\r\n\r\n"
end
