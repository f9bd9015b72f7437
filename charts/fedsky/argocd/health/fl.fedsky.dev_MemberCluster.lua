-- Argo CD health of a MemberCluster: Healthy while the last probe reached its API server
-- (Ready True) and any cloud credentials it names are accepted; Degraded when either fails,
-- transient or not, since the cluster cannot be used meanwhile. Written for Argo CD's
-- Lua, which has no string library by default.
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
local ready = cond("Ready")
if ready == nil or ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = "waiting for the first probe"
  return hs
end
if ready.status == "False" then
  hs.status = "Degraded"
  hs.message = say(ready)
  return hs
end
local creds = cond("CredentialsValid")
if creds ~= nil and creds.status == "False" then
  hs.status = "Degraded"
  hs.message = "cloud credentials: " .. say(creds)
  return hs
end
hs.status = "Healthy"
hs.message = say(ready)
return hs
