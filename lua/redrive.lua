#!lua
-- Move dead-letter entries back to their source stream for another try:
-- each is added again with its original fields and deleted from the
-- dead-letter stream in this one script, so it moves exactly once.
-- KEYS[1] source stream, KEYS[2] dead-letter stream
-- ARGV: dead-letter entry ids
-- Returns {"OK", moved, missing, kept} or {"WRONGTYPE", key, type} or
-- {"BADENTRY", id} (an entry not written by streamtx: nothing moved).
-- kept counts entries without original fields (the source entry was gone or
-- too large), which stay in the dead-letter stream.
for i = 1, 2 do
  local t = redis.call('TYPE', KEYS[i]).ok
  if t ~= 'none' and t ~= 'stream' then return {'WRONGTYPE', KEYS[i], t} end
end
local moves, missing, kept, seen = {}, 0, 0, {}
for i = 1, #ARGV do
  -- An id given twice would be found twice before it is deleted below and
  -- moved twice: Redis's own spelling of the id (e[1][1]) counts once.
  local e = redis.call('XRANGE', KEYS[2], ARGV[i], ARGV[i])
  if e[1] and seen[e[1][1]] then
    -- moved, or kept, already
  elseif not e[1] then
    missing = missing + 1
  else
    local f = e[1][2]
    local n = tonumber(f[1] == 'stx.fields' and f[2] or nil)
    if not n or n < 0 or 2 + 2 * n > #f or n ~= math.floor(n) then
      return {'BADENTRY', ARGV[i]}
    end
    seen[e[1][1]] = true
    if n == 0 then kept = kept + 1 else moves[#moves + 1] = {ARGV[i], f, n} end
  end
end
for _, m in ipairs(moves) do
  local f, n = m[2], m[3]
  local args = {KEYS[1], '*'}
  for j = 3, 2 + 2 * n do args[#args + 1] = f[j] end
  redis.call('XADD', unpack(args))
  redis.call('XDEL', KEYS[2], m[1])
end
return {'OK', #moves, missing, kept}
