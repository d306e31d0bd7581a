#!lua
-- Move (stream, group) so that processing resumes after a given id: the
-- group's position, the stored offset, a new epoch and no epoch holder
-- token (fencing any running processor: it compares both), a new lineage
-- (so LMDB snapshots are rebuilt), no handler-attempt counters, optionally
-- without the state.  Every check comes before the first write.
--
-- Replaying entries the group had already committed must not send their
-- publishes again: unless ARGV[5] asks to re-emit them, the meta field
-- replay_until becomes the highest of its old value and the offset the
-- group had before this reset, and the commit script drops the publishes
-- of every entry at or below it (the state is still written); the field is
-- deleted when that bound is at or below the target (nothing under it is
-- delivered again).  With ARGV[5] = '1' the field is deleted and the
-- replay publishes again.
--
-- A clearing reset rebuilds the state from the entries the stream still
-- holds: when entries after the target were trimmed or deleted, the
-- rebuilt state would silently differ, so it is refused (GAP) unless
-- ARGV[6] = '1'.  Entries removed after the target are seen as the reader
-- sees them (src/reader.c): max-deleted-entry-id above the target (XDEL,
-- and streamtx's own trims, which record what they removed there), or
-- entries removed at all when the target is the start, or an empty stream
-- whose last id is after the target.
--
-- KEYS[1] stream, KEYS[2] meta hash, KEYS[3] state hash,
-- KEYS[4] handler-attempt counters (hash)
-- ARGV[1] group, ARGV[2] target id, or '$' for the stream's last id,
-- ARGV[3] new lineage, ARGV[4] '1' to delete the state, ARGV[5] '1' to
-- re-emit the publishes of replayed entries, ARGV[6] '1' to clear the state
-- even when entries after the target are gone
--
-- Returns {"OK", epoch, target id, replay_until or ""};
--         {"NOGROUP", message}; {"WRONGTYPE", key, type};
--         {"BADARGS", message};
--         {"GAP", target, max deleted id, first entry id or ""}.

-- #include ids.lua

local stream, meta, state, attempts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, target, lineage = ARGV[1], ARGV[2], ARGV[3]
local clear, reemit, force = ARGV[4] == '1', ARGV[5] == '1', ARGV[6] == '1'

local t = redis.call('TYPE', stream).ok
if t == 'none' then
  return {'NOGROUP', 'stream ' .. stream .. ' does not exist'}
elseif t ~= 'stream' then
  return {'WRONGTYPE', stream, t}
end
for i = 2, 4 do
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

local info = {}
do
  local x = redis.call('XINFO', 'STREAM', stream)
  for i = 1, #x, 2 do info[x[i]] = x[i + 1] end
end
if target == '$' then target = info['last-generated-id'] end
if not id_parse(target) then return {'BADARGS', 'bad target id'} end
-- Let Redis itself parse the id before the group is destroyed: the pattern
-- above lets through digits that do not fit 64 bits, and a CREATE failing
-- after the DESTROY would leave no group at all.
local parsed = redis.pcall('XRANGE', stream, target, target, 'COUNT', 1)
if parsed.err then return {'BADARGS', 'bad target id'} end
if string.len(lineage) == 0 then return {'BADARGS', 'empty lineage'} end

if clear and not force then
  local max_deleted = info['max-deleted-entry-id']
  local removed = tonumber(info['entries-added']) > tonumber(info['length'])
  local first = info['first-entry']
  local first_id = type(first) == 'table' and first[1] or ''
  if id_cmp(target, max_deleted) < 0 or
     (removed and (id_cmp(target, '0-0') == 0 or
                   (tonumber(info['length']) == 0 and
                    id_cmp(target, info['last-generated-id']) < 0))) then
    return {'GAP', target, max_deleted, first_id}
  end
end

-- The bound of the replay that must not publish again.
local old = redis.call('HMGET', meta, 'offset', 'replay_until')
for i = 1, 2 do
  if old[i] and not id_parse(old[i]) then
    return {'BADARGS', 'meta field ' .. (i == 1 and 'offset' or 'replay_until') ..
            ' is not a stream id'}
  end
end
local replay_until = nil
if not reemit then
  replay_until = old[2] or nil
  if old[1] and (not replay_until or id_cmp(old[1], replay_until) > 0) then
    replay_until = old[1]
  end
  -- Entries at or below the target are not delivered again: a bound
  -- there suppresses nothing.
  if replay_until and id_cmp(replay_until, target) <= 0 then replay_until = nil end
end

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
-- The entries are delivered afresh: earlier handler failures do not count.
redis.call('DEL', attempts)
if replay_until then
  redis.call('HSET', meta, 'offset', target, 'lineage', lineage, 'replay_until', replay_until)
else
  redis.call('HSET', meta, 'offset', target, 'lineage', lineage)
  redis.call('HDEL', meta, 'replay_until')
end
redis.call('HDEL', meta, 'token')
local epoch = redis.call('HINCRBY', meta, 'epoch', 1)
return {'OK', epoch, target, replay_until or ''}
