#!lua
-- Move one entry to the dead-letter stream: add it there with its original
-- fields and why it failed, acknowledge it and advance the offset, all at
-- once and under the same fencing and exactly-once rules as a commit.
-- KEYS[1] stream, KEYS[2] meta hash, KEYS[3] dead-letter stream,
-- KEYS[4] attempts hash
-- ARGV[1] group, ARGV[2] epoch, ARGV[3] token, ARGV[4] expected seq,
-- ARGV[5] entry id, ARGV[6] reason, ARGV[7] error text, ARGV[8] attempts,
-- ARGV[9] failed-at (ms), ARGV[10..] the entry's fields as the processor
-- read them (pairs), used only when the stream no longer holds the entry (a
-- rebuild through a history source reads trimmed entries from elsewhere)
-- The dead-letter entry is: stx.fields N, the N original pairs, then
-- stx.source_stream, stx.group, stx.source_id, stx.reason, stx.error,
-- stx.attempts, stx.failed_at.  N comes first so a redrive restores exactly
-- the original pairs, whatever their names.
-- Returns {"OK", seq}; refusals with nothing written: the guard's FENCED
-- and SEQ, {"DUP", offset}, {"GAP", id}, {"NOGROUP", msg},
-- {"WRONGTYPE", key, type}, {"FULL", key}, {"BADARGS", msg}.

-- #include ids.lua
-- #include guard.lua

local stream, meta, dlq, attempts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, token, id = ARGV[1], ARGV[3], ARGV[5]

local m, refused = guard(meta, ARGV[2], token, ARGV[4])
if not m then return refused end
local dlq_type
refused = wrong_type(stream, 'stream', true)
if not refused then refused, dlq_type = wrong_type(dlq, 'stream') end
refused = refused or wrong_type(attempts, 'hash')
if refused then return refused end
if stream_full(dlq, dlq_type) then return {'FULL', dlq} end
if not id_parse(id) then return {'BADARGS', 'bad id ' .. id} end
local offset = m[4]
if id_cmp(id, offset) <= 0 then return {'DUP', offset} end
local held = redis.call('XRANGE', stream, '(' .. offset, id, 'COUNT', 2)
for _, e in ipairs(held) do
  if e[1] ~= id then return {'GAP', e[1]} end
end

local fields = held[1] and held[1][2] or {unpack(ARGV, 10)}
if #fields % 2 ~= 0 then return {'BADARGS', 'fields are not pairs'} end
local args = {dlq, '*', 'stx.fields', tostring(#fields / 2)}
for i = 1, #fields do args[#args + 1] = fields[i] end
local tail = {'stx.source_stream', stream, 'stx.group', group, 'stx.source_id', id,
              'stx.reason', ARGV[6], 'stx.error', ARGV[7], 'stx.attempts', ARGV[8],
              'stx.failed_at', ARGV[9]}
for i = 1, #tail do args[#args + 1] = tail[i] end
if #args > 7000 then
  -- Too many fields for one XADD call: keep the metadata, say so.
  args = {dlq, '*', 'stx.fields', '0'}
  tail[10] = ARGV[7] .. ' (original fields omitted: too many)'
  for i = 1, #tail do args[#args + 1] = tail[i] end
end

refused = ack_first(stream, group, id)
if refused then return refused end
redis.call('HSET', meta, 'offset', id, 'writer', token)
local seq = redis.call('HINCRBY', meta, 'seq', 1)
redis.call('HDEL', attempts, id)
redis.call('XADD', unpack(args))
return {'OK', seq}
