#!lua
-- Commit a batch of handled messages atomically: acknowledge them, advance
-- the stored offset, write the changed state keys and add the staged
-- publishes.  Every check comes before the first write, because Redis does
-- not roll back a script that fails half-way.
--
-- KEYS[1] stream, KEYS[2] meta hash, KEYS[3] state hash,
-- KEYS[4..] streams the batch publishes to (each once).
-- ARGV: group, epoch, n_ids, ids (ascending)...,
--       n_puts, (key, value)..., n_dels, key...,
--       n_pubs, then per publish: index into KEYS, n_pairs, (field, value)...
--
-- Returns {"OK", seq} after writing;
--         {"DUP", id...} when some ids were committed before (id <= stored
--           offset, or no longer pending): nothing is written except the
--           acknowledgement of those ids that are still pending;
--         {"BEHIND", id, consumer} when an entry at or below the last id is
--           pending outside the batch: nothing is written;
--         {"FENCED", current epoch}; {"NOGROUP", message};
--         {"WRONGTYPE", key, type}; {"BADARGS", message}.

-- #include ids.lua

local stream, meta, state = KEYS[1], KEYS[2], KEYS[3]
local group, epoch = ARGV[1], ARGV[2]

local current = redis.call('HGET', meta, 'epoch')
if current ~= epoch then
  return {'FENCED', current or '0'}
end

local t = redis.call('TYPE', stream).ok
if t == 'none' then
  return {'NOGROUP', 'stream ' .. stream .. ' does not exist'}
elseif t ~= 'stream' then
  return {'WRONGTYPE', stream, t}
end
t = redis.call('TYPE', state).ok
if t ~= 'none' and t ~= 'hash' then return {'WRONGTYPE', state, t} end
for i = 4, #KEYS do
  t = redis.call('TYPE', KEYS[i]).ok
  if t ~= 'none' and t ~= 'stream' then return {'WRONGTYPE', KEYS[i], t} end
end

-- Decode the arguments fully before touching anything.
local pos = 3
local n_ids = tonumber(ARGV[pos]); pos = pos + 1
if not n_ids or n_ids < 1 or n_ids > 1000 then return {'BADARGS', '1 to 1000 ids'} end
pos = pos + n_ids
local n_puts = tonumber(ARGV[pos]); pos = pos + 1
local puts_at = pos
pos = pos + 2 * n_puts
local n_dels = tonumber(ARGV[pos]); pos = pos + 1
local dels_at = pos
pos = pos + n_dels
local n_pubs = tonumber(ARGV[pos]); pos = pos + 1
local pubs = {}
for i = 1, n_pubs do
  local k = tonumber(ARGV[pos])
  local n_pairs = tonumber(ARGV[pos + 1])
  if not k or k < 4 or k > #KEYS or not n_pairs or n_pairs < 1 then
    return {'BADARGS', 'bad publish ' .. i}
  end
  if n_pairs > 3000 then
    return {'BADARGS', 'publish ' .. i .. ' has more than 3000 fields'}
  end
  pubs[i] = {k, pos + 2, n_pairs}
  pos = pos + 2 + 2 * n_pairs
end
if pos - 1 ~= #ARGV then return {'BADARGS', 'argument count'} end

-- Nothing may stay pending at or below the end of the batch outside it: the
-- offset moves past it, and it would later look committed.  Such an entry
-- belongs to another consumer (a paused processor that read after the
-- takeover, or a dead one not yet claimed): the caller claims it and
-- handles it first.  Asking for one more than the batch can hold shows any
-- such entry, and otherwise gives the whole pending range.
local offset = redis.call('HGET', meta, 'offset') or '0-0'
if not id_parse(offset) then return {'BADARGS', 'stored offset is not an id'} end
local last = ARGV[3 + n_ids]
local pending = redis.pcall('XPENDING', stream, group, '-', last, n_ids + 1)
if type(pending) == 'table' and pending.err then
  if string.sub(pending.err, 1, 7) == 'NOGROUP' then return {'NOGROUP', pending.err} end
  return redis.error_reply(pending.err)
end
local in_batch = {}
for i = 4, 3 + n_ids do in_batch[ARGV[i]] = true end
local is_pending = {}
for _, p in ipairs(pending) do
  if not in_batch[p[1]] then return {'BEHIND', p[1], p[2]} end
  is_pending[p[1]] = true
end

-- Exactly-once: an id at or below the stored offset, or one the group no
-- longer holds as pending, was committed before.  Ids ascend, so only a
-- first id at or below the offset needs a look at the others.
local dups, stale_pending = {}, {}
local below = id_cmp(ARGV[4], offset) <= 0
for i = 4, 3 + n_ids do
  local id = ARGV[i]
  local at_or_below = below and id_cmp(id, offset) <= 0
  if at_or_below or not is_pending[id] then
    dups[#dups + 1] = id
    if at_or_below and is_pending[id] then stale_pending[#stale_pending + 1] = id end
  end
end
if #dups > 0 then
  if #stale_pending > 0 then
    redis.call('XACK', stream, group, unpack(stale_pending))
  end
  local reply = {'DUP'}
  for i = 1, #dups do reply[i + 1] = dups[i] end
  return reply
end

-- Writes.  The first one, XACK, also refuses malformed ids before anything
-- is written.  unpack() takes ranges of ARGV, in bounded chunks.
local function call_ranges(cmd, key, first, count, width)
  local i = 0
  while i < count do
    local n = math.min(count - i, 1000)
    local a = first + i * width
    redis.call(cmd, key, unpack(ARGV, a, a + n * width - 1))
    i = i + n
  end
end
redis.call('XACK', stream, group, unpack(ARGV, 4, 3 + n_ids))
redis.call('HSET', meta, 'offset', last)
local new_seq = redis.call('HINCRBY', meta, 'seq', 1)
if n_puts > 0 then call_ranges('HSET', state, puts_at, n_puts, 2) end
if n_dels > 0 then call_ranges('HDEL', state, dels_at, n_dels, 1) end
for i = 1, n_pubs do
  local p = pubs[i]
  redis.call('XADD', KEYS[p[1]], '*', unpack(ARGV, p[2], p[2] + 2 * p[3] - 1))
end
return {'OK', new_seq}
