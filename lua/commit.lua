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
--         {"FENCED", current epoch}; {"NOGROUP", message};
--         {"WRONGTYPE", key, type}; {"BADARGS", message}.

-- #include ids.lua

-- Lua's unpack() is limited by the C stack (about 8000 values), and an
-- error after the first write would leave a partial commit: large argument
-- lists go out in bounded chunks.
local CHUNK = 1000
local function call_chunked(prefix, list, width)
  local i = 1
  while i <= #list do
    local args = {unpack(prefix)}
    local last = math.min(#list, i + CHUNK * width - 1)
    for j = i, last do args[#args + 1] = list[j] end
    redis.call(unpack(args))
    i = last + 1
  end
end
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
if not n_ids or n_ids < 1 then return {'BADARGS', 'no ids'} end
local ids = {}
for i = 1, n_ids do ids[i] = ARGV[pos]; pos = pos + 1 end
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

-- Exactly-once: an id at or below the stored offset, or one the group no
-- longer holds as pending, was committed before.
local offset = redis.call('HGET', meta, 'offset') or '0-0'
if not id_parse(offset) then return {'BADARGS', 'stored offset is not an id'} end
for i = 1, n_ids do
  if not id_parse(ids[i]) then return {'BADARGS', 'bad id ' .. ids[i]} end
  if i > 1 and id_cmp(ids[i], ids[i - 1]) <= 0 then
    return {'BADARGS', 'ids not ascending'}
  end
end

local pending = redis.pcall('XPENDING', stream, group, ids[1], ids[n_ids], n_ids)
if type(pending) == 'table' and pending.err then
  if string.sub(pending.err, 1, 7) == 'NOGROUP' then return {'NOGROUP', pending.err} end
  return redis.error_reply(pending.err)
end
local is_pending = {}
for _, p in ipairs(pending) do is_pending[p[1]] = true end
if #pending >= n_ids then
  -- The count may have cut the reply short (the range can hold entries of
  -- other consumers), so an id missing from it is asked for on its own.
  for i = 1, n_ids do
    if not is_pending[ids[i]] then
      local one = redis.call('XPENDING', stream, group, ids[i], ids[i], 1)
      if one[1] then is_pending[ids[i]] = true end
    end
  end
end

local dups, stale_pending = {}, {}
for i = 1, n_ids do
  local at_or_below = id_cmp(ids[i], offset) <= 0
  if at_or_below or not is_pending[ids[i]] then
    dups[#dups + 1] = ids[i]
    if at_or_below and is_pending[ids[i]] then stale_pending[#stale_pending + 1] = ids[i] end
  end
end
if #dups > 0 then
  if #stale_pending > 0 then
    call_chunked({'XACK', stream, group}, stale_pending, 1)
  end
  local reply = {'DUP'}
  for i = 1, #dups do reply[i + 1] = dups[i] end
  return reply
end

-- Writes.
call_chunked({'XACK', stream, group}, ids, 1)
redis.call('HSET', meta, 'offset', ids[n_ids])
local new_seq = redis.call('HINCRBY', meta, 'seq', 1)
if n_puts > 0 then
  local args = {}
  for i = 0, 2 * n_puts - 1 do args[i + 1] = ARGV[puts_at + i] end
  call_chunked({'HSET', state}, args, 2)
end
if n_dels > 0 then
  local args = {}
  for i = 0, n_dels - 1 do args[i + 1] = ARGV[dels_at + i] end
  call_chunked({'HDEL', state}, args, 1)
end
for i = 1, n_pubs do
  local p = pubs[i]
  local args = {KEYS[p[1]], '*'}
  for j = 0, 2 * p[3] - 1 do args[j + 3] = ARGV[p[2] + j] end
  redis.call('XADD', unpack(args))
end
return {'OK', new_seq}
