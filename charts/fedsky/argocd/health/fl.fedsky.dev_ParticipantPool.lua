-- Argo CD health of a ParticipantPool: Healthy when every site has eligible nodes (Ready
-- True) and together they have as many as the pool's jobs ask for per round; Degraded when
-- a site is unhealthy or capacity is short (InsufficientCapacity True). Written for Argo
-- CD's Lua, which has no string library by default.
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
for _, t in ipairs({"Stalled", "InsufficientCapacity"}) do
  local c = cond(t)
  if c ~= nil and c.status == "True" then
    hs.status = "Degraded"
    hs.message = say(c)
    return hs
  end
end
local ready = cond("Ready")
if ready == nil or ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = "waiting for the sites to be observed"
elseif ready.status == "False" then
  hs.status = "Degraded"
  hs.message = say(ready)
else
  hs.status = "Healthy"
  hs.message = say(ready)
end
return hs
