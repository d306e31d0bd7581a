#!lua
-- Recovery read: the next entry of the stream after a cursor that the group
-- has already delivered (to any consumer, or skipped: XGROUP SETID, a
-- foreign XACK and XGROUP DELCONSUMER do not matter here — the stored
-- offset is the truth, and everything after it is handled in order).  Each
-- entry read here is counted as a handler attempt in the attempts hash, so
-- an entry that crashes the process whenever it is handled is found and
-- dead-lettered, while healthy entries are not blamed:
--   * a new run of a processor (another run id) reading an entry counts one
--     attempt, unless the last run marked it handled (its commit was refused
--     for a reason that is not the entry's: "h");
--   * the same run counts one more only when it says its handler failed on
--     the entry (ARGV[6]).
-- KEYS[1] stream, KEYS[2] meta hash, KEYS[3] attempts hash
-- ARGV[1] group, ARGV[2] epoch, ARGV[3] token, ARGV[4] cursor,
-- ARGV[5] run id, ARGV[6] id whose handler failed in this run, or ""
-- Returns {"OK", entries, counts} (at most one entry; counts[1] is its
-- number of attempts so far, this one included), {"OK", {}, {}} when the
-- group delivered nothing after the cursor, or a refusal: FENCED, NOGROUP,
-- WRONGTYPE.

-- #include ids.lua
-- #include guard.lua

local stream, meta, attempts = KEYS[1], KEYS[2], KEYS[3]
local m, refused = guard(meta, ARGV[2], ARGV[3], nil)
if not m then return refused end
refused = wrong_type(stream, 'stream', true) or wrong_type(attempts, 'hash')
if refused then return refused end
if not id_parse(ARGV[4]) then return {'BADARGS', 'cursor is not an id'} end

local last = group_last_delivered(stream, ARGV[1])
if not last then return {'NOGROUP', 'group ' .. ARGV[1] .. ' of stream ' .. stream .. ' does not exist'} end
if id_cmp(ARGV[4], last) >= 0 then return {'OK', {}, {}} end
local entries = redis.call('XRANGE', stream, '(' .. ARGV[4], last, 'COUNT', 1)
if #entries == 0 then return {'OK', {}, {}} end

local id = entries[1][1]
local run, n, mark = nil, 0, ''
local rec = redis.call('HGET', attempts, id)
if rec then
  local r, c, k = string.match(rec, '^([^:]*):(%d+):?(%a?)$')
  if r then run, n, mark = r, tonumber(c), k end
end
if id == ARGV[6] or (run ~= ARGV[5] and mark ~= 'h') then n = n + 1 end
redis.call('HSET', attempts, id, ARGV[5] .. ':' .. n)
return {'OK', entries, {n}}
