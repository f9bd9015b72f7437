-- Runs one Argo CD health script on fixtures the way Argo CD does: the script body as a
-- chunk with the object in the global `obj`, only the base, table and os libraries
-- loaded (no string library, so no ("x"):method() either), and the returned table
-- checked for a valid health status.
-- Usage: lua5.4 check.lua health/<group>_<Kind>.lua testdata/<Kind>/*.json
-- Each fixture is {"expect": {"status": ..., "message": <substring>}, "object": {...}}.
local cjson = require "cjson"

local VALID = { Healthy = true, Progressing = true, Degraded = true, Suspended = true,
  Missing = true, Unknown = true }

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- Argo CD hands JSON null to Lua as nil; cjson gives a sentinel.
local function denull(v)
  if v == cjson.null then return nil end
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = denull(x) end
  end
  return v
end

local function run(script, name, obj)
  local env = {
    obj = obj, assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
    pcall = pcall, rawequal = rawequal, rawget = rawget, rawset = rawset, select = select,
    tonumber = tonumber, tostring = tostring, type = type,
    table = { concat = table.concat, insert = table.insert, remove = table.remove,
      sort = table.sort },
    os = { time = os.time, date = os.date, clock = os.clock, difftime = os.difftime },
  }
  env._G = env
  local chunk = assert(load(script, "@" .. name, "t", env))
  local mt = getmetatable("")
  local index = mt.__index
  mt.__index = nil
  local ok, hs = pcall(chunk)
  mt.__index = index
  if not ok then return nil, "script error: " .. tostring(hs) end
  if type(hs) ~= "table" then return nil, "script returned " .. type(hs) .. ", not a table" end
  if not VALID[hs.status] then return nil, "invalid health status " .. tostring(hs.status) end
  if hs.message ~= nil and type(hs.message) ~= "string" then
    return nil, "message is a " .. type(hs.message)
  end
  return hs
end

local script_path = arg[1]
local script = read(script_path)
local passed, failed, seen = 0, 0, {}
for i = 2, #arg do
  local case = denull(cjson.decode(read(arg[i])))
  local want = case.expect
  local hs, err = run(script, script_path, case.object)
  if hs ~= nil then
    seen[hs.status] = true
    local msg = hs.message or ""
    if hs.status ~= want.status then
      err = "status " .. hs.status .. ", want " .. want.status .. " (message: " .. msg .. ")"
    elseif not msg:find(want.message, 1, true) then
      err = "message " .. string.format("%q", msg) .. " lacks " .. string.format("%q", want.message)
    end
  end
  if err then
    failed = failed + 1
    print("FAIL " .. arg[i] .. ": " .. err)
  else
    passed = passed + 1
    print("ok   " .. arg[i] .. ": " .. hs.status .. ": " .. hs.message)
  end
end
-- Every status the script can return needs a fixture that returns it.
for status in script:gmatch('hs%.status%s*=%s*"(%a+)"') do
  if not seen[status] then
    seen[status] = true
    failed = failed + 1
    print("FAIL " .. script_path .. ": no fixture returns " .. status)
  end
end
print(passed .. " " .. failed)
os.exit(failed == 0)
