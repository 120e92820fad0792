-- Three requests per batch (wrk's pipelining).
function request()
  return wrk.format(nil, "/p/1") .. wrk.format(nil, "/p/2") .. wrk.format(nil, "/p/3")
end
