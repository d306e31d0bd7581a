#!lua
-- Re-read the consumer's own pending entries after a cursor, with their
-- delivery counts, while the caller holds the current epoch.  New entries
-- are read with a plain XREADGROUP; this script serves recovery, where the
-- delivery count decides when an entry is dead-lettered.
-- KEYS[1] stream, KEYS[2] meta hash
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] epoch, ARGV[4] count,
-- ARGV[5] the id after which to read the pending list
-- Returns {"OK", entries, counts} where counts[i] is the delivery count of
-- entries[i]; {"FENCED", current epoch}; {"NOGROUP", message};
-- {"WRONGTYPE", key, type}.
local current = redis.call('HGET', KEYS[2], 'epoch')
if current ~= ARGV[3] then
  return {'FENCED', current or '0'}
end
local t = redis.call('TYPE', KEYS[1]).ok
if t == 'none' then
  return {'NOGROUP', 'stream ' .. KEYS[1] .. ' does not exist'}
elseif t ~= 'stream' then
  return {'WRONGTYPE', KEYS[1], t}
end

local r = redis.pcall('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[4],
                      'STREAMS', KEYS[1], ARGV[5])
if type(r) == 'table' and r.err then
  if string.sub(r.err, 1, 7) == 'NOGROUP' then
    return {'NOGROUP', r.err}
  end
  return redis.error_reply(r.err)
end

local entries = r and r[1] and r[1][2] or {}
local counts = {}
if #entries > 0 then
  local first, last = entries[1][1], entries[#entries][1]
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], first, last, #entries, ARGV[2])
  local by_id = {}
  for _, p in ipairs(pending) do by_id[p[1]] = p[4] end
  for i = 1, #entries do counts[i] = by_id[entries[i][1]] or 1 end
end
return {'OK', entries, counts}
