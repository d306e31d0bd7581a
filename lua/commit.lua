#!lua
-- Commit a batch of handled entries atomically: acknowledge them, advance
-- the stored offset and commit sequence, write the changed state keys and
-- add the staged publishes.  Every check comes before the first write,
-- because Redis does not roll back a script that fails half-way; an error
-- after the checks can only be Redis itself failing, and the caller then
-- treats the commit as in doubt (settled from the stored seq and offset).
--
-- KEYS[1] stream, KEYS[2] meta hash, KEYS[3] state hash, KEYS[4] attempts
-- hash, KEYS[5..] streams the batch publishes to (each once): the targets
-- in this slot and, last, the group's outbox when a publish goes through it
-- (an outbox entry is a publish like the others here: relay.c forwards it).
-- ARGV: group, epoch, token, expected seq, run id, n_ids, ids (ascending)...,
--       n_puts, (key, value)..., n_dels, key...,
--       n_pubs, n_blocks, then the blocks: msgpack objects, per publish
--       its index into KEYS, the index of its source id among the ids
--       (1-based), n_pairs, then each field and value as a string (whole
--       publishes per block; a block holds at most 6100 values, within the
--       C stack that unpacking it uses)
--
-- Returns {"OK", seq, publishes dropped} after writing (publishes of
--   entries at or below the meta's replay_until are dropped: a rebuild
--   replays them into state without sending their effects again);
-- refusals, with nothing written:
--   the guard's FENCED and SEQ;
--   {"DUP", offset} when the first id is at or below the stored offset;
--   {"GAP", id} when the stream holds an entry between the offset and the
--     first id (it was skipped: XGROUP SETID, a
--     foreign XACK, DELCONSUMER, a paused processor's read): the caller
--     reads from the offset again;
--   {"NOGROUP", message}; {"BADARGS", message};
-- refusals that mark the batch's entries as handled in the attempts hash
-- (their own fault is not the reason, so the next run does not count an
-- attempt against them):
--   {"WRONGTYPE", key, type}; {"FULL", key} (a publish target whose last id
--   is the highest possible id).

-- #include ids.lua
-- #include guard.lua

-- unpack() of one XADD is bounded by Lua's C stack: a publish's pairs
-- (STX_MAX_PUBLISH_PAIRS) plus, for an outbox entry, the three of relay.h.
local MAX_PAIRS = 3003
local BLOCK_VALUES = 6100 -- script_limits.h: STX_PUBLISH_BLOCK_VALUES

local stream, meta, state, attempts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, epoch, token, run = ARGV[1], ARGV[2], ARGV[3], ARGV[5]

local m, refused = guard(meta, epoch, token, ARGV[4])
if not m then return refused end
local offset, replay_until = m[4], m[6]

-- Decode the arguments fully before touching anything.
local pos = 6
local n_ids = tonumber(ARGV[pos]); pos = pos + 1
if not n_ids or n_ids < 1 or n_ids > 1000 then return {'BADARGS', '1 to 1000 ids'} end
local ids_at = pos
pos = pos + n_ids
local n_puts = tonumber(ARGV[pos]); pos = pos + 1
if not n_puts then return {'BADARGS', 'n_puts'} end
local puts_at = pos
pos = pos + 2 * n_puts
local n_dels = tonumber(ARGV[pos]); pos = pos + 1
if not n_dels then return {'BADARGS', 'n_dels'} end
local dels_at = pos
pos = pos + n_dels
local n_pubs = tonumber(ARGV[pos]); pos = pos + 1
local n_blocks = tonumber(ARGV[pos]); pos = pos + 1
if not n_pubs or not n_blocks or n_blocks > n_pubs then return {'BADARGS', 'n_pubs'} end
-- Every block is decoded and every publish's header checked before
-- anything is written: a block that does not decode must not stop the
-- script half-way through its writes.  The field names and values are not
-- checked one by one (type() on each cost more than the XADDs): the
-- library writes each as a msgpack string (commit.c), which cmsgpack
-- always makes a Lua string.  Only the library calls this script (the
-- guard wants the group's epoch and token), so a nil, boolean or table
-- where XADD wants a string would take an encoder other than its own.
local blocks = {}
local nkeys, seen = #KEYS, 0
for b = 1, n_blocks do
  local blob = ARGV[pos + b - 1]
  local ok, t = pcall(function() return {cmsgpack.unpack(blob)} end)
  if not ok or #t > BLOCK_VALUES then return {'BADARGS', 'block ' .. b .. ' does not decode'} end
  local i, len = 1, #t
  while i <= len do
    local k, src, n_pairs = t[i], t[i + 1], t[i + 2]
    seen = seen + 1
    if type(k) ~= 'number' or k < 5 or k > nkeys or k % 1 ~= 0 or type(src) ~= 'number' or
       src < 1 or src > n_ids or src % 1 ~= 0 or type(n_pairs) ~= 'number' or n_pairs < 1 or
       n_pairs % 1 ~= 0 then
      return {'BADARGS', 'bad publish ' .. seen}
    end
    if n_pairs > MAX_PAIRS then
      return {'BADARGS', 'publish ' .. seen .. ' has more than ' .. MAX_PAIRS .. ' fields'}
    end
    local last_value = i + 2 + 2 * n_pairs
    if last_value > len then return {'BADARGS', 'publish ' .. seen .. ' is cut short'} end
    i = last_value + 1
  end
  blocks[b] = t
end
if seen ~= n_pubs then return {'BADARGS', 'publish count'} end
pos = pos + n_blocks
if pos - 1 ~= #ARGV then return {'BADARGS', 'argument count'} end

-- The ids come from one read, in stream order; checking the ends costs the
-- same for any batch size: the first must be after the offset, and the
-- last (the new offset) at or after the first.
local first, last = ARGV[ids_at], ARGV[ids_at + n_ids - 1]
if not id_parse(first) or not id_parse(last) then return {'BADARGS', 'bad id'} end
if id_cmp(first, offset) <= 0 then return {'DUP', offset} end
if id_cmp(last, first) < 0 then return {'BADARGS', 'ids are not ascending'} end

-- Marks the batch handled: a refusal below is not the entries' fault.
local function refuse_handled(reply)
  redis.call('HDEL', attempts, 'batch') -- no crash: the next run need not narrow
  for i = ids_at, ids_at + n_ids - 1 do
    local rec = redis.call('HGET', attempts, ARGV[i])
    local n = rec and string.match(rec, '^[^:]*:(%d+)') or '0'
    redis.call('HSET', attempts, ARGV[i], run .. ':' .. n .. ':h')
  end
  return reply
end

-- (the attempts hash is checked before refuse_handled() may write it)
refused = wrong_type(stream, 'stream', true) or wrong_type(state, 'hash') or
          wrong_type(attempts, 'hash')
if refused then return refused end
for i = 5, #KEYS do
  local t
  refused, t = wrong_type(KEYS[i], 'stream')
  if refused then return refuse_handled(refused) end
  if stream_full(KEYS[i], t) then return refuse_handled({'FULL', KEYS[i]}) end
end

-- The offset never passes an entry that was not applied.  A batch is a run
-- of consecutive entries of the stream (one read, and a stream only grows
-- at its end; entries deleted since are not there to apply), so the only
-- place such an entry can hide is between the offset and the first id:
-- the first entry the stream holds after the offset must be the batch's.
local held = redis.call('XRANGE', stream, '(' .. offset, first, 'COUNT', 1)
if held[1] and held[1][1] ~= first then return {'GAP', held[1][1]} end

-- Writes.  The commit sequence moves last: a commit the library sent
-- behind this one (before its reply came) expects the sequence this one
-- makes, so it runs only if this one was written whole.
refused = ack_first(stream, group, unpack(ARGV, ids_at, ids_at + n_ids - 1))
if refused then return refused end
redis.call('HSET', meta, 'offset', last, 'writer', token)

local function call_ranges(cmd, key, first, count, width)
  local i = 0
  while i < count do
    local n = math.min(count - i, 1000)
    local a = first + i * width
    redis.call(cmd, key, unpack(ARGV, a, a + n * width - 1))
    i = i + n
  end
end
if n_puts > 0 then call_ranges('HSET', state, puts_at, n_puts, 2) end
if n_dels > 0 then call_ranges('HDEL', state, dels_at, n_dels, 1) end
if redis.call('EXISTS', attempts) == 1 then call_ranges('HDEL', attempts, ids_at, n_ids, 1) end
local dropped = 0
for b = 1, n_blocks do
  local t = blocks[b]
  local i, len = 1, #t
  while i <= len do
    local last_value = i + 2 + 2 * t[i + 2]
    if replay_until and id_cmp(ARGV[ids_at + t[i + 1] - 1], replay_until) <= 0 then
      dropped = dropped + 1
    else
      redis.call('XADD', KEYS[t[i]], '*', unpack(t, i + 3, last_value))
    end
    i = last_value + 1
  end
end
local new_seq = redis.call('HINCRBY', meta, 'seq', 1)
return {'OK', new_seq, dropped}
