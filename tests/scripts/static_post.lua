-- No request(): the wrk table alone defines the request, reused for every send.
wrk.method = "POST"
wrk.body = "a=1&b=2"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
