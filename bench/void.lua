-- wrk driver for the transport baseline: GET /rpc/void does no database
-- work, so its rate is what the HTTP layer and loopback sockets allow.
wrk.method = "GET"
wrk.path = "/rpc/void"
