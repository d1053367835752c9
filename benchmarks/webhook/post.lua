-- wrk script: POST a registry notification body with the registry's content type.
-- usage: wrk -t2 -c50 -d10s -s post.lua URL -- BODY_FILE
-- The request is static (no request() function), so wrk formats it once.

function init(args)
   local file = assert(io.open(args[1], "rb"), "cannot open " .. tostring(args[1]))
   wrk.body = file:read("*a")
   file:close()
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/vnd.docker.distribution.events.v1+json"
end
