-- wrk script: POST one signed issues.labeled body with a unique
-- X-GitHub-Delivery per request. BODY_FILE and SIG_FILE are prepared by run.sh.
local body_file = os.getenv("BODY_FILE")
local sig_file = os.getenv("SIG_FILE")
local f = assert(io.open(body_file, "rb")); local body = f:read("*a"); f:close()
local s = assert(io.open(sig_file, "rb")); local sig = s:read("*l"); s:close()

-- Each wrk thread has its own Lua state; setup() runs in the main state and
-- hands every thread a distinct id, so delivery ids never collide.
local next_thread = 0
function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_id", next_thread)
end

local counter = 0
function request()
  counter = counter + 1
  local headers = {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "issues",
    ["X-GitHub-Delivery"] = string.format("%d-%d-%d", os.time(), thread_id, counter),
    ["X-Hub-Signature-256"] = sig,
  }
  return wrk.format("POST", "/webhook", headers, body)
end
