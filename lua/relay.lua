#!lua
-- Relay outbox entries to one target stream exactly once.  Runs in the
-- target's slot; the outbox lives in the source partition's slot, so the
-- two cannot be written by one script.  The target's relayed hash holds,
-- per outbox (one per source partition and group), the id of the last
-- outbox entry appended: an entry at or below it was appended before (by
-- this relay or by another one, a zombie included) and is skipped, so a
-- replay of any outbox range writes nothing twice.  The mark moves in the
-- same script as the XADDs, so it never says more or less than was added.
-- The relay sends each target's entries in outbox order, which is commit
-- order, so the mark only ever moves forward.
--
-- KEYS[1] target stream, KEYS[2] relayed hash of the target.
-- ARGV: outbox key (the field of the mark), n, then per entry: its outbox
--       id, n_pairs, then the field names and values.
-- Returns {"OK", appended, skipped, mark}; refusals, with nothing written:
--   {"WRONGTYPE", key, type}; {"FULL", key}; {"BADARGS", message} (also when
--   the stored mark is not an id: relaying past it could append twice).

-- #include ids.lua
-- #include guard.lua

local MAX_PAIRS = 3000 -- script_limits.h: STX_MAX_PUBLISH_PAIRS

local target, relayed, outbox = KEYS[1], KEYS[2], ARGV[1]
local n = tonumber(ARGV[2])
if not outbox or not n or n < 1 or n % 1 ~= 0 then return {'BADARGS', 'n'} end

-- Ids as numbers when both parts have at most 15 digits (exact in a
-- double), which is every id XADD * makes before the year 33658; others
-- are compared as digit strings (ids.lua).  gt(a, b): a > b.
local function num_id(id)
  local ms, seq = id_parse(id)
  if ms and #ms <= 15 and #seq <= 15 then return {tonumber(ms), tonumber(seq), id} end
  return ms and {nil, nil, id} or nil
end
local function gt(a, b)
  if a[1] and b[1] then return a[1] > b[1] or (a[1] == b[1] and a[2] > b[2]) end
  return id_cmp(a[3], b[3]) > 0
end

-- Every check before the first write.
local entries, pos, prev = {}, 3, nil
for e = 1, n do
  local id, n_pairs = num_id(ARGV[pos] or ''), tonumber(ARGV[pos + 1])
  if not id then return {'BADARGS', 'entry ' .. e .. ': bad id'} end
  if prev and not gt(id, prev) then return {'BADARGS', 'ids are not ascending'} end
  if not n_pairs or n_pairs < 1 or n_pairs > MAX_PAIRS or n_pairs % 1 ~= 0 then
    return {'BADARGS', 'entry ' .. e .. ': bad pair count'}
  end
  if pos + 1 + 2 * n_pairs > #ARGV then return {'BADARGS', 'entry ' .. e .. ' is cut short'} end
  entries[e] = {id, pos + 2, pos + 1 + 2 * n_pairs}
  prev = id
  pos = pos + 2 + 2 * n_pairs
end
if pos - 1 ~= #ARGV then return {'BADARGS', 'argument count'} end
local refused, t = wrong_type(target, 'stream')
if refused then return refused end
if stream_full(target, t) then return {'FULL', target} end
refused = wrong_type(relayed, 'hash')
if refused then return refused end

local mark = num_id(redis.call('HGET', relayed, outbox) or '0-0')
if not mark then return {'BADARGS', 'the mark of ' .. outbox .. ' is not an id'} end
local appended, skipped = 0, 0
for e = 1, n do
  local id = entries[e][1]
  -- The ids ascend: once one is above the mark, so is every later one.
  if appended > 0 or gt(id, mark) then
    redis.call('XADD', target, '*', unpack(ARGV, entries[e][2], entries[e][3]))
    appended = appended + 1
  else
    skipped = skipped + 1
  end
end
if appended > 0 then
  mark = entries[n][1]
  redis.call('HSET', relayed, outbox, mark[3])
end
return {'OK', appended, skipped, mark[3]}
