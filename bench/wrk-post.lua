-- wrk script of the Slipway benchmark's --wrk cross-check: POST the file $BODY_FILE as application/json, with
-- "Authorization: $AUTH" when AUTH is set.
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end
