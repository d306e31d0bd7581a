#!lua
-- Deliver entries to the consumer, but only while the caller holds the
-- current epoch: a fenced processor must not take new entries into its
-- pending list, where the current holder would find them only after it had
-- committed past them.
-- KEYS[1] stream, KEYS[2] meta hash
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] epoch, ARGV[4] count,
-- ARGV[5] '>' for new entries, or an id to re-read the consumer's own
-- pending entries after it.
-- Returns {"OK", entries, counts} where counts[i] is the delivery count of
-- entries[i]; {"EMPTY", last id of the stream} when '>' found nothing;
-- {"FENCED", current epoch}; {"NOGROUP", message}; {"WRONGTYPE", key, type}.
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

local entries = {}
if r and r[1] then
  entries = r[1][2]
end
if #entries == 0 then
  if ARGV[5] == '>' then
    local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
    return {'EMPTY', last[1] and last[1][1] or '0-0'}
  end
  return {'OK', entries, {}}
end

local counts = {}
if ARGV[5] == '>' then
  for i = 1, #entries do counts[i] = 1 end
else
  local first, last = entries[1][1], entries[#entries][1]
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], first, last, #entries, ARGV[2])
  local by_id = {}
  for _, p in ipairs(pending) do by_id[p[1]] = p[4] end
  for i = 1, #entries do counts[i] = by_id[entries[i][1]] or 1 end
end
return {'OK', entries, counts}
