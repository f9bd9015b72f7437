-- Argo CD health of an AggregatorPlacement: Healthy once solved with a feasible pick
-- (Ready and Feasible True), Degraded when no candidate meets the requirements or the spec
-- is invalid (Stalled True: it waits for a change in git). Written for Argo CD's Lua,
-- which has no string library by default.
hs = {}
local function cond(t)
  for _, c in ipairs(obj.status.conditions or {}) do
    if c.type == t then return c end
  end
  return nil
end
local function say(c)
  local reason = c.reason or c.type
  if c.message == nil or c.message == "" then return reason end
  return reason .. ": " .. c.message
end
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the controller"
  return hs
end
if obj.status.observedGeneration ~= nil and obj.metadata.generation ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "waiting for the controller to observe the latest spec"
  return hs
end
for _, t in ipairs({"Stalled", "Feasible", "Ready"}) do
  local c = cond(t)
  local bad = (t == "Stalled" and "True") or "False"
  if c ~= nil and c.status == bad then
    hs.status = "Degraded"
    hs.message = say(c)
    return hs
  end
end
local ready = cond("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = say(ready)
else
  hs.status = "Progressing"
  hs.message = "waiting for the solver"
end
return hs
