-- wrk script for bench/http_bench.py: POSTs Kamailio's routing requests, one per line
-- of the file named by the first script argument, in turn; the token is the second.
local requests = {}
local index = 0

function init(args)
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = "Token " .. args[2]
  for line in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("POST", "/api/v1/kamailio/rtjson", headers, line)
  end
  -- each wrk thread starts at its own place in the list
  index = math.random(#requests)
end

function request()
  index = index % #requests + 1
  return requests[index]
end
