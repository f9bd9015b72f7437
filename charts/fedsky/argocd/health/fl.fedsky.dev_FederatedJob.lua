-- Argo CD health of a FederatedJob. Like a batch Job: Progressing while it is placed,
-- started and runs its rounds, Healthy once it succeeded, Degraded when it failed or is
-- Stalled (an invalid spec or an infeasible placement waits for a change in git).
-- Written for Argo CD's Lua, which has no string library by default.
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
if obj.status == nil or (obj.status.phase == nil and obj.status.conditions == nil) then
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
local phase = obj.status.phase or "Pending"
-- Before the phase: an invalid spec keeps the phase the job had.
local stalled = cond("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = say(stalled)
  return hs
end
if phase == "Failed" then
  local failed = cond("Failed")
  hs.status = "Degraded"
  hs.message = failed ~= nil and say(failed) or "phase Failed"
  return hs
end
if phase == "Succeeded" then
  local succeeded = cond("Succeeded")
  hs.status = "Healthy"
  hs.message = succeeded ~= nil and say(succeeded) or "phase Succeeded"
  return hs
end
-- Pending, Placing, Starting or Running: name what holds it up, then the rounds.
hs.status = "Progressing"
hs.message = "phase " .. phase
for _, t in ipairs({"Placed", "AggregatorReady", "ParticipantsReady"}) do
  local c = cond(t)
  if c ~= nil and c.status ~= "True" then
    hs.message = hs.message .. "; " .. say(c)
    break
  end
end
local progressing = cond("Progressing")
if progressing ~= nil and progressing.message ~= nil and progressing.message ~= "" then
  hs.message = hs.message .. "; " .. progressing.message
end
-- Degraded means fewer participants than asked, or some replaced, while the quorum still
-- runs: shown, but the job is not failing (that is Stalled or Failed above).
local degraded = cond("Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.message = hs.message .. "; degraded: " .. say(degraded)
end
return hs
