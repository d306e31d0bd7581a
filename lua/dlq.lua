#!lua
-- Move one entry to the dead-letter stream: add it there with its original
-- fields and why it failed, acknowledge it and advance the offset, all at
-- once and under the same fencing and exactly-once rules as a commit.
-- KEYS[1] stream, KEYS[2] meta hash, KEYS[3] dead-letter stream
-- ARGV[1] group, ARGV[2] epoch, ARGV[3] entry id, ARGV[4] reason,
-- ARGV[5] error text, ARGV[6] attempts, ARGV[7] failed-at (ms)
-- The dead-letter entry is: stx.fields N, the N original pairs, then
-- stx.source_stream, stx.group, stx.source_id, stx.reason, stx.error,
-- stx.attempts, stx.failed_at.  N comes first so a redrive restores exactly
-- the original pairs, whatever their names.
-- Returns {"OK", seq}, {"DUP", id}, {"BEHIND", id, consumer} (an entry
-- below it is pending under another consumer: nothing written),
-- {"FENCED", epoch}, {"NOGROUP", msg}, {"WRONGTYPE", key, type}.
local stream, meta, dlq = KEYS[1], KEYS[2], KEYS[3]
local group, epoch, id = ARGV[1], ARGV[2], ARGV[3]

-- #include ids.lua

local current = redis.call('HGET', meta, 'epoch')
if current ~= epoch then return {'FENCED', current or '0'} end
local t = redis.call('TYPE', stream).ok
if t == 'none' then return {'NOGROUP', 'stream ' .. stream .. ' does not exist'} end
if t ~= 'stream' then return {'WRONGTYPE', stream, t} end
t = redis.call('TYPE', dlq).ok
if t ~= 'none' and t ~= 'stream' then return {'WRONGTYPE', dlq, t} end

if not id_parse(id) then return {'BADARGS', 'bad id ' .. id} end
local offset = redis.call('HGET', meta, 'offset') or '0-0'
if not id_parse(offset) then return {'BADARGS', 'stored offset is not an id'} end
local c = id_cmp(id, offset)

-- As for a commit: nothing may stay pending below the entry outside it.
local pending = redis.pcall('XPENDING', stream, group, '-', id, 2)
if type(pending) == 'table' and pending.err then
  if string.sub(pending.err, 1, 7) == 'NOGROUP' then return {'NOGROUP', pending.err} end
  return redis.error_reply(pending.err)
end
if pending[1] and pending[1][1] ~= id then return {'BEHIND', pending[1][1], pending[1][2]} end
if c <= 0 or not pending[1] then
  if pending[1] then redis.call('XACK', stream, group, id) end
  return {'DUP', id}
end

local entry = redis.call('XRANGE', stream, id, id)
local fields = entry[1] and entry[1][2] or {}
local args = {dlq, '*', 'stx.fields', tostring(#fields / 2)}
for i = 1, #fields do args[#args + 1] = fields[i] end
local tail = {'stx.source_stream', stream, 'stx.group', group, 'stx.source_id', id,
              'stx.reason', ARGV[4], 'stx.error', ARGV[5], 'stx.attempts', ARGV[6],
              'stx.failed_at', ARGV[7]}
for i = 1, #tail do args[#args + 1] = tail[i] end
if #args > 7000 then
  -- Too many fields for one XADD call: keep the metadata, say so.
  args = {dlq, '*', 'stx.fields', '0'}
  tail[10] = ARGV[5] .. ' (original fields omitted: too many)'
  for i = 1, #tail do args[#args + 1] = tail[i] end
end

redis.call('XADD', unpack(args))
redis.call('XACK', stream, group, id)
redis.call('HSET', meta, 'offset', id)
return {'OK', redis.call('HINCRBY', meta, 'seq', 1)}
