#!lua
-- Move (stream, group) so that processing resumes after a given id: the
-- group's position, the stored offset, a new epoch (fencing any running
-- processor) and a new lineage (so LMDB snapshots are rebuilt), optionally
-- without the state.  Every check comes before the first write.
--
-- KEYS[1] stream, KEYS[2] meta hash, KEYS[3] state hash
-- ARGV[1] group, ARGV[2] target id, or '$' for the stream's last id,
-- ARGV[3] new lineage, ARGV[4] '1' to delete the state
--
-- Returns {"OK", epoch, target id}; {"NOGROUP", message};
--         {"WRONGTYPE", key, type}; {"BADARGS", message}.
local stream, meta, state = KEYS[1], KEYS[2], KEYS[3]
local group, target, lineage, clear = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'

local t = redis.call('TYPE', stream).ok
if t == 'none' then
  return {'NOGROUP', 'stream ' .. stream .. ' does not exist'}
elseif t ~= 'stream' then
  return {'WRONGTYPE', stream, t}
end
for i = 2, 3 do
  t = redis.call('TYPE', KEYS[i]).ok
  if t ~= 'none' and t ~= 'hash' then return {'WRONGTYPE', KEYS[i], t} end
end

local found = false
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  for i = 1, #g, 2 do
    if g[i] == 'name' and g[i + 1] == group then found = true end
  end
end
if not found then
  return {'NOGROUP', 'consumer group ' .. group .. ' of stream ' .. stream .. ' does not exist'}
end

if target == '$' then
  local info = redis.call('XINFO', 'STREAM', stream)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then target = info[i + 1] end
  end
end
if not string.match(target, '^%d+%-%d+$') then return {'BADARGS', 'bad target id'} end
-- Let Redis itself parse the id before the group is destroyed: the pattern
-- above lets through digits that do not fit 64 bits, and a CREATE failing
-- after the DESTROY would leave no group at all.
local parsed = redis.pcall('XRANGE', stream, target, target, 'COUNT', 1)
if parsed.err then return {'BADARGS', 'bad target id'} end
if string.len(lineage) == 0 then return {'BADARGS', 'empty lineage'} end

-- Writes.
-- The group's pending entries are dropped by destroying the group and
-- creating it again at the target, rather than by XACK-ing its pending
-- list in chunks: DESTROY frees the pending list and the consumers in one
-- command, with no XPENDING paging loop inside the script (whose argument
-- lists would have to be bounded for unpack()), and leaves no stale
-- consumer entries behind.  Both steps are in this script, so no reader
-- ever sees the group missing.
redis.call('XGROUP', 'DESTROY', stream, group)
redis.call('XGROUP', 'CREATE', stream, group, target)
-- Without state, there is no state schema version either.
if clear then
  redis.call('DEL', state)
  redis.call('HDEL', meta, 'schema')
end
redis.call('HSET', meta, 'offset', target, 'lineage', lineage)
local epoch = redis.call('HINCRBY', meta, 'epoch', 1)
return {'OK', epoch, target}
