#!lua
-- The member set of a consumer group of a partitioned stream: instance id
-- -> "EXPIRES_MS HOST PID" (Redis' clock).  Advisory: it only steers who
-- asks for which partition; leases and epochs decide.  It may live in a
-- slot of its own.
-- KEYS[1] member hash.  ARGV[1] op, ARGV[2] id, ARGV[3] ttl ms, ARGV[4] host
-- and pid.
--   beat:  records the caller as live until now + ttl, drops members whose
--          time ran out, and returns {"OK", now_ms, id1, expires1, ...}.
--   leave: removes the caller: {"OK", now_ms}.
--   list:  {"OK", now_ms, id1, expires1, info1, ...} of the live members (no writes).
local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'none' and t ~= 'hash' then return {'WRONGTYPE', KEYS[1], t} end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local op = ARGV[1]
if op == 'leave' then
  redis.call('HDEL', KEYS[1], ARGV[2])
  return {'OK', tostring(now)}
end
if op == 'beat' then
  redis.call('HSET', KEYS[1], ARGV[2], tostring(now + tonumber(ARGV[3])) .. ' ' .. (ARGV[4] or ''))
  redis.call('PEXPIRE', KEYS[1], 3 * tonumber(ARGV[3]) + 60000)
end
local all = redis.call('HGETALL', KEYS[1])
local out = {'OK', tostring(now)}
for i = 1, #all, 2 do
  local exp = tonumber(string.match(all[i + 1], '^(%d+)') or '0') or 0
  if exp > now then
    out[#out + 1] = all[i]
    out[#out + 1] = tostring(exp)
    if op == 'list' then out[#out + 1] = string.match(all[i + 1], '^%d+ (.*)$') or '' end
  elseif op == 'beat' then
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return out
