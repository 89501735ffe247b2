-- Risk periods, shared by the import (expanded where a script says "#include risk.lua").
-- They are a flat array {colour, until, colour, until, ...} in the record (``rec.r``), one pair
-- per colour, ordered by colour. This mirrors codeengine.code.rules.merge_risk_at.
local function risk_map(flat, now)
  local m = {}
  if flat then
    for i = 1, #flat, 2 do
      if flat[i + 1] > now then m[flat[i]] = flat[i + 1] end
    end
  end
  return m
end
local function risk_flat(m)
  local out = {}
  for colour = 0, 3 do
    if m[colour] then out[#out + 1] = colour; out[#out + 1] = m[colour] end
  end
  return out
end
local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end
