#!lua
-- Rewrite the state for a new schema version in one step: the migrated
-- values, the deleted keys and the new version land together or not at all.
-- KEYS[1] meta hash, KEYS[2] state hash
-- ARGV: epoch, token, expected seq, from version, to version,
--       n_puts, (key, value)..., n_dels, key...
-- Returns {"OK", seq}, {"SCHEMA", stored version}, or the guard's FENCED
-- and SEQ, {"WRONGTYPE", key, type}, {"BADARGS", msg}.

-- #include guard.lua

local meta, state = KEYS[1], KEYS[2]
local m, refused = guard(meta, ARGV[1], ARGV[2], ARGV[3])
if not m then return refused end
local stored = redis.call('HGET', meta, 'schema') or '0'
if stored ~= ARGV[4] then return {'SCHEMA', stored} end
refused = wrong_type(state, 'hash')
if refused then return refused end

local n_puts = tonumber(ARGV[6])
if not n_puts then return {'BADARGS', 'n_puts'} end
local dels_at = 7 + 2 * n_puts
local n_dels = tonumber(ARGV[dels_at])
if not n_dels or dels_at + n_dels ~= #ARGV then return {'BADARGS', 'argument count'} end

-- Bounded chunks: unpack() is limited by the C stack.
local function chunked(cmd, first, count, width)
  local i = 0
  while i < count do
    local args = {cmd, state}
    local last = math.min(count, i + 1000)
    for j = first + i * width, first + last * width - 1 do args[#args + 1] = ARGV[j] end
    redis.call(unpack(args))
    i = last
  end
end
chunked('HSET', 7, n_puts, 2)
chunked('HDEL', dels_at + 1, n_dels, 1)
redis.call('HSET', meta, 'schema', ARGV[5], 'writer', ARGV[2])
return {'OK', redis.call('HINCRBY', meta, 'seq', 1)}
