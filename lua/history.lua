#!lua
-- Recovery read from a history source (the archive): the entries after the
-- cursor that the stream no longer holds come from outside Redis, so
-- read.lua cannot count handler attempts at them.  This script does for
-- such a batch what read.lua does for one read from the stream, with the
-- same records in the attempts hash, so that an entry that crashes the
-- process whenever it is handled is isolated and dead-lettered during a
-- rebuild too (read.lua's comment explains the records):
--   * the batch record RUN:FIRST_ID:LAST_ID:SIZE; a run that finds another
--     run's record still first after the cursor narrows to half (suspect);
--   * an entry handled alone, or one whose handler failed, gets RUN:N, and
--     another run's record without the mark "h" counts one more attempt.
-- KEYS[1] meta hash, KEYS[2] attempts hash
-- ARGV[1] epoch, ARGV[2] token, ARGV[3] run id, ARGV[4] id whose handler
-- failed in this run, or "", ARGV[5..] the ids the source offered, in
-- order (the first is the first entry after the cursor)
-- Returns {"OK", size, counts}: handle the first SIZE ids (counts[i]:
-- attempts so far, this one not included); or the guard's FENCED, or
-- WRONGTYPE.

-- #include ids.lua
-- #include guard.lua
-- #include attempts.lua

local meta, attempts = KEYS[1], KEYS[2]
local m, refused = guard(meta, ARGV[1], ARGV[2], nil)
if not m then return refused end
refused = wrong_type(attempts, 'hash')
if refused then return refused end
local run, failed = ARGV[3], ARGV[4]
local ids = {}
for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids < 1 then return {'BADARGS', 'no ids'} end
for i = 1, #ids do
  if not id_parse(ids[i]) then return {'BADARGS', 'bad id'} end
end
local size, first = #ids, ids[1]

local held = redis.call('HGET', attempts, 'batch')
local hrun, hfirst, hlast, hsize = string.match(held or '', '^([^:]*):([^:]*):([^:]*):(%d+)$')
if hrun and hrun ~= run and hfirst == first then
  if hlast == '' then hlast = ids[math.min(tonumber(hsize), #ids)] end
  redis.call('HSET', attempts, 'suspect', hlast .. ':' .. math.max(1, math.floor(tonumber(hsize) / 2)))
end
local suspect = redis.call('HGET', attempts, 'suspect')
local slast, ssize = string.match(suspect or '', '^([^:]*):(%d+)$')
if slast and id_parse(slast) then
  if id_cmp(first, slast) <= 0 then size = math.min(size, tonumber(ssize))
  else redis.call('HDEL', attempts, 'suspect') end
end

redis.call('HSET', attempts, 'batch', run .. ':' .. first .. ':' .. ids[size] .. ':' .. size)
return {'OK', size, count_attempts(attempts, run, failed, ids, size)}
