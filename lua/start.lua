#!lua
-- Take a new epoch for (stream, group), fencing every older processor.
-- KEYS[1] stream, KEYS[2] meta hash, KEYS[3] state hash
-- ARGV[1] group, ARGV[2] id the group starts from when created, ARGV[3] lineage
-- to record when the meta hash is new, ARGV[4] the state schema version the
-- processor expects (0: unversioned), recorded when there is no state yet,
-- ARGV[5] the new epoch holder's token (random, checked by every write).
-- Returns {"OK", epoch, offset, seq, lineage, stored schema version, writer}
-- or {"WRONGTYPE", key, type}.
-- Every check comes before the first write: Redis does not roll scripts back.
-- A group this script creates starts where group_start_id says: its meta
-- offset (the truth the processor reads from) is set to the group's start.
-- A group that existed without meta starts at the beginning of the stream:
-- nothing says which of its entries were applied.

-- #include guard.lua
local function type_of(key)
  return redis.call('TYPE', key).ok
end

local expected = {[1] = 'stream', [2] = 'hash', [3] = 'hash'}
for i = 1, 3 do
  local t = type_of(KEYS[i])
  if t ~= 'none' and t ~= expected[i] then
    return {'WRONGTYPE', KEYS[i], t}
  end
end

local created = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], ARGV[2], 'MKSTREAM')
if type(created) == 'table' and created.err and
   string.sub(created.err, 1, 9) ~= 'BUSYGROUP' then
  return redis.error_reply(created.err)
end

local fresh = not (type(created) == 'table' and created.err)
if fresh and redis.call('HEXISTS', KEYS[2], 'offset') == 0 then
  local start = group_last_delivered(KEYS[1], ARGV[1])
  if start and start ~= '0-0' then redis.call('HSET', KEYS[2], 'offset', start) end
end

local epoch = redis.call('HINCRBY', KEYS[2], 'epoch', 1)
redis.call('HSET', KEYS[2], 'token', ARGV[5])
redis.call('HSETNX', KEYS[2], 'lineage', ARGV[3])
if ARGV[4] ~= '0' and redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('HSETNX', KEYS[2], 'schema', ARGV[4])
end
local meta = redis.call('HMGET', KEYS[2], 'offset', 'seq', 'lineage', 'schema', 'writer')
return {'OK', epoch, meta[1] or '0-0', meta[2] or '0', meta[3], meta[4] or '0', meta[5] or ''}
