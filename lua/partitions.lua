#!lua
-- The partition count of a logical stream, in its metadata hash.
-- KEYS[1] the metadata hash; ARGV[1] "create" or "grow", ARGV[2] the count.
-- create: sets the count when the hash is new; the same count again is not
--   an error (a retried create); another count is {"EXISTS", count}.
-- grow:   raises the count; {"NOTFOUND"} when the stream was never created,
--   {"SHRINK", count} for a lower count (nothing written).
-- Returns {"OK", count}.  The count is only ever raised, so a partition
-- that existed once keeps existing: its entries and its keys stay valid.
local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'none' and t ~= 'hash' then return {'WRONGTYPE', KEYS[1], t} end
local want = tonumber(ARGV[2])
local have = tonumber(redis.call('HGET', KEYS[1], 'partitions') or '0')
if ARGV[1] == 'create' then
  if have > 0 then
    if have == want then return {'OK', tostring(have)} end
    return {'EXISTS', tostring(have)}
  end
  local now = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'partitions', ARGV[2], 'hash', 'crc32',
             'created_ms', tostring(tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)))
  return {'OK', ARGV[2]}
end
if have == 0 then return {'NOTFOUND'} end
if want < have then return {'SHRINK', tostring(have)} end
if want > have then redis.call('HSET', KEYS[1], 'partitions', ARGV[2]) end
return {'OK', tostring(want)}
