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
--   {"WRONGTYPE", key, type}; {"FULL", key}; {"BADARGS", message}.

-- #include ids.lua
-- #include guard.lua

local MAX_PAIRS = 3000 -- script_limits.h: STX_MAX_PUBLISH_PAIRS

local target, relayed, outbox = KEYS[1], KEYS[2], ARGV[1]
local n = tonumber(ARGV[2])
if not outbox or not n or n < 1 or n % 1 ~= 0 then return {'BADARGS', 'n'} end

-- Every check before the first write.
local entries, pos, prev = {}, 3, nil
for e = 1, n do
  local id, n_pairs = ARGV[pos], tonumber(ARGV[pos + 1])
  if not id or not id_parse(id) then return {'BADARGS', 'entry ' .. e .. ': bad id'} end
  if prev and id_cmp(id, prev) <= 0 then return {'BADARGS', 'ids are not ascending'} end
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

local mark = redis.call('HGET', relayed, outbox) or '0-0'
local appended, skipped = 0, 0
for e = 1, n do
  local id = entries[e][1]
  if id_cmp(id, mark) > 0 then
    redis.call('XADD', target, '*', unpack(ARGV, entries[e][2], entries[e][3]))
    mark = id
    appended = appended + 1
  else
    skipped = skipped + 1
  end
end
if appended > 0 then redis.call('HSET', relayed, outbox, mark) end
return {'OK', appended, skipped, mark}
