#!lua
-- Take the next epoch after a reconnect, but only from ourselves: when the
-- stored epoch and token are still the caller's.  A request the caller sent
-- on the old connection that is still in flight (in a network buffer, a
-- slow proxy, a retransmission) carries the old epoch and is refused when
-- it arrives, so what this script returns is final.
-- KEYS[1] meta hash
-- ARGV[1] epoch, ARGV[2] token, ARGV[3] new token
-- Returns {"OK", epoch, seq, offset, writer, lineage} or the guard's FENCED.

-- #include guard.lua

local m, refused = guard(KEYS[1], ARGV[1], ARGV[2], nil)
if not m then return refused end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'token', ARGV[3])
return {'OK', epoch, m[3], m[4], m[5], redis.call('HGET', KEYS[1], 'lineage') or ''}
