#!lua
-- Recovery read: the next entries of the stream after a cursor that the
-- group has already delivered (to any consumer, or skipped: XGROUP SETID, a
-- foreign XACK and XGROUP DELCONSUMER do not matter here; the stored offset
-- is the truth, and everything after it is handled in order), in batches,
-- counting handler attempts in the attempts hash so that an entry that
-- crashes the process whenever it is handled is found and dead-lettered
-- while its neighbours are never blamed for it:
--   * each read records which run holds which batch (field "batch":
--     RUN:FIRST_ID:LAST_ID:SIZE).  A run that finds the batch another run
--     held still first after the cursor knows that run died handling it,
--     and reads the entries up to LAST_ID at most half as many at a time
--     (field "suspect": LAST_ID:SIZE, at least one): each crash narrows the
--     batch around the entry that causes it;
--   * an entry read alone (SIZE 1) gets a record RUN:N; a run that finds
--     another run's record without the mark "h" counts one more attempt:
--     that run died while the entry was the only one in hand.  "h" means
--     the entry was handled but its commit was refused for a reason that is
--     not the entry's (commit.lua), so it does not count;
--   * a run counts one more when its own handler failed on the entry
--     (ARGV[6]).
-- KEYS[1] stream, KEYS[2] meta hash, KEYS[3] attempts hash
-- ARGV[1] group, ARGV[2] epoch, ARGV[3] token, ARGV[4] cursor,
-- ARGV[5] run id, ARGV[6] id whose handler failed in this run, or "",
-- ARGV[7] the most entries to read
-- Returns {"OK", entries, counts} (counts[i]: attempts at entries[i] so
-- far, this one not included), {"OK", {}, {}} when the group delivered
-- nothing after the cursor, or a refusal: FENCED, NOGROUP, WRONGTYPE; or,
-- when no entry of the batch can hold an attempt record (the hash holds
-- none, no handler failed, more than one entry is read), {"RANGE", size,
-- last}: the batch is the first SIZE entries after the cursor up to LAST
-- (the group's last delivered id), none attempted before, and the caller
-- reads them itself with an XRANGE sent behind this script.  Passing
-- entries through a script converts each one into Lua and back, which cost
-- more than the rest of the recovery of an entry; the batch record then
-- holds an empty LAST_ID, found from FIRST_ID and SIZE when a run needs it.

-- #include ids.lua
-- #include guard.lua
-- #include attempts.lua

local stream, meta, attempts = KEYS[1], KEYS[2], KEYS[3]
local m, refused = guard(meta, ARGV[2], ARGV[3], nil)
if not m then return refused end
refused = wrong_type(stream, 'stream', true) or wrong_type(attempts, 'hash')
if refused then return refused end
if not id_parse(ARGV[4]) then return {'BADARGS', 'cursor is not an id'} end

local last = group_last_delivered(stream, ARGV[1])
if not last then return {'NOGROUP', 'group ' .. ARGV[1] .. ' of stream ' .. stream .. ' does not exist'} end
-- Caught up: no batch is in hand (and an empty attempts hash costs the
-- commits nothing).
local function caught_up()
  redis.call('HDEL', attempts, 'batch')
  return {'OK', {}, {}}
end
if id_cmp(ARGV[4], last) >= 0 then return caught_up() end
local run, failed = ARGV[5], ARGV[6]
local size = tonumber(ARGV[7])
if not size or size < 1 then return {'BADARGS', 'count'} end

local after = redis.call('XRANGE', stream, '(' .. ARGV[4], last, 'COUNT', 1)
if #after == 0 then return caught_up() end
local first = after[1][1]

-- A run that died holding the batch that starts here: the entries of that
-- batch are read at most half as many at a time until they are passed.
local held = redis.call('HGET', attempts, 'batch')
local hrun, hfirst, hlast, hsize = string.match(held or '', '^([^:]*):([^:]*):([^:]*):(%d+)$')
if hrun and hrun ~= run and hfirst == first then
  if hlast == '' then -- the batch was read by its caller: find its last entry
    local b = redis.call('XRANGE', stream, hfirst, last, 'COUNT', tonumber(hsize))
    hlast = b[#b][1]
  end
  redis.call('HSET', attempts, 'suspect', hlast .. ':' .. math.max(1, math.floor(tonumber(hsize) / 2)))
end
local suspect = redis.call('HGET', attempts, 'suspect')
local slast, ssize = string.match(suspect or '', '^([^:]*):(%d+)$')
if slast and id_parse(slast) then
  if id_cmp(first, slast) <= 0 then size = math.min(size, tonumber(ssize))
  else
    redis.call('HDEL', attempts, 'suspect')
    suspect = nil
  end
end

if size > 1 and failed == '' and
   redis.call('HLEN', attempts) == (held and 1 or 0) + (suspect and 1 or 0) then
  redis.call('HSET', attempts, 'batch', run .. ':' .. first .. '::' .. size)
  return {'RANGE', tostring(size), last}
end

local entries = size == 1 and after or redis.call('XRANGE', stream, '(' .. ARGV[4], last, 'COUNT', size)
if #entries < size then size = #entries end
redis.call('HSET', attempts, 'batch',
           run .. ':' .. entries[1][1] .. ':' .. entries[#entries][1] .. ':' .. size)

local ids = {}
for i = 1, size do ids[i] = entries[i][1] end
return {'OK', entries, count_attempts(attempts, run, failed, ids, size)}
