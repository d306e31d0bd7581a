-- Stream ids are pairs of unsigned 64-bit numbers, "MS-SEQ".  Lua numbers
-- are doubles, so ids are compared, incremented and decremented as digit
-- strings.  This file is spliced into the scripts that include it at build
-- time (lua/embed.cmake): Redis receives each script whole.
local ID_PART_MAX = '18446744073709551615'
local function id_norm(a) return (string.gsub(a, '^0+(%d)', '%1')) end
local function id_cmp_num(a, b)
  a, b = id_norm(a), id_norm(b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  if a == b then return 0 end
  return a < b and -1 or 1
end
-- ms, seq of a well-formed id; nil otherwise.
local function id_parse(id) return string.match(id, '^(%d+)-(%d+)$') end
-- -1, 0 or 1 for two well-formed ids.
local function id_cmp(x, y)
  local xm, xs = id_parse(x)
  local ym, ys = id_parse(y)
  local c = id_cmp_num(xm, ym)
  if c ~= 0 then return c end
  return id_cmp_num(xs, ys)
end
local function id_incr_num(s)
  local out, carry = {}, 1
  for i = #s, 1, -1 do
    local d = string.byte(s, i) - 48 + carry
    carry = d == 10 and 1 or 0
    out[i] = string.char(48 + d % 10)
  end
  local r = table.concat(out)
  return carry == 1 and '1' .. r or r
end
local function id_decr_num(s)   -- s > 0
  local out, borrow = {}, 1
  for i = #s, 1, -1 do
    local d = string.byte(s, i) - 48 - borrow
    borrow = d < 0 and 1 or 0
    out[i] = string.char(48 + d % 10)
  end
  return id_norm(table.concat(out))
end
-- The id right after id, or nil after the highest id.
local function id_next(id)
  local ms, seq = id_parse(id)
  if id_norm(seq) ~= ID_PART_MAX then return id_norm(ms) .. '-' .. id_incr_num(id_norm(seq)) end
  if id_norm(ms) == ID_PART_MAX then return nil end
  return id_incr_num(id_norm(ms)) .. '-0'
end
-- The id right before id (id > 0-0).
local function id_prev(id)
  local ms, seq = id_parse(id)
  if id_norm(seq) ~= '0' then return id_norm(ms) .. '-' .. id_decr_num(id_norm(seq)) end
  return id_decr_num(id_norm(ms)) .. '-' .. ID_PART_MAX
end
