#!lua
-- The lease of one partition of a consumer group: who serves it.  The
-- lease lives in the partition's slot (its key is derived like the meta
-- hash), and its clock is Redis' own (TIME), never a client's.
-- KEYS[1] lease hash: owner (token), expires_ms, epoch, acquired_ms.
-- ARGV[1] op, ARGV[2] the caller's token, ARGV[3] ttl in ms, ARGV[4] epoch
-- (renew: the processor epoch the owner holds, "" to leave it).
-- ops:
--   acquire: the lease is free, expired or already the caller's: take it
--            {"OK", expires_ms, now_ms}; else {"HELD", owner, expires_ms, now_ms}.
--   renew:   still the caller's (expired or not: while nobody else took it,
--            nobody else can have served it): {"OK", expires_ms, now_ms};
--            else {"LOST", owner or "", now_ms}.
--   release: the caller's: hand it back (expires now) {"OK"}; else {"LOST", ...}.
-- A lease decides who serves a partition, not who may write: taking it is
-- followed by the processor's epoch take (start.lua), and every commit is
-- checked against that epoch, so an owner that lost its lease unseen (a
-- paused process) is fenced by the epoch, not by the lease.
local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'none' and t ~= 'hash' then return {'WRONGTYPE', KEYS[1], t} end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local l = redis.call('HMGET', KEYS[1], 'owner', 'expires_ms')
local owner, expires = l[1], tonumber(l[2] or '0') or 0
local op, me, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
if op == 'acquire' then
  if owner and owner ~= '' and owner ~= me and expires > now then
    return {'HELD', owner, tostring(expires), tostring(now)}
  end
  if owner ~= me then redis.call('HSET', KEYS[1], 'acquired_ms', tostring(now)) end
  redis.call('HSET', KEYS[1], 'owner', me, 'expires_ms', tostring(now + ttl))
  return {'OK', tostring(now + ttl), tostring(now)}
end
if owner ~= me then return {'LOST', owner or '', tostring(now)} end
if op == 'renew' then
  redis.call('HSET', KEYS[1], 'expires_ms', tostring(now + ttl))
  if ARGV[4] and ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'epoch', ARGV[4]) end
  return {'OK', tostring(now + ttl), tostring(now)}
end
if op == 'release' then
  redis.call('HSET', KEYS[1], 'owner', '', 'expires_ms', tostring(now))
  return {'OK'}
end
return {'BADARGS', 'unknown op'}
