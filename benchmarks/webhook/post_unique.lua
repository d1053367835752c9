-- wrk script: like post.lua, but every request carries a fresh event id, as distinct
-- pushes would, so the daemon cannot de-duplicate the events it keeps for the next run.
-- usage: wrk -t2 -c50 -d10s -s post_unique.lua URL -- BODY_FILE

local threads = 0
local body = ""
local counter = 0

function setup(thread)
   threads = threads + 1
   thread:set("tag", threads)
end

function init(args)
   local file = assert(io.open(args[1], "rb"), "cannot open " .. tostring(args[1]))
   body = file:read("*a")
   file:close()
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/vnd.docker.distribution.events.v1+json"
end

function request()
   counter = counter + 1
   local id = string.format("bench-%d-%d", tag, counter)
   local fresh = body:gsub('"id": "[^"]*"', '"id": "' .. id .. '"', 1)
   return wrk.format(nil, nil, nil, fresh)
end
