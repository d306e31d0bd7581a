#!lua
-- Rewrite the state for a new schema version in one step: the migrated
-- values, the deleted keys and the new version land together or not at all.
-- KEYS[1] meta hash, KEYS[2] state hash
-- ARGV: epoch, from version, to version, n_puts, (key, value)..., n_dels, key...
-- Returns {"OK", seq}, {"FENCED", epoch} or {"SCHEMA", stored version}.
local meta, state = KEYS[1], KEYS[2]
local current = redis.call('HGET', meta, 'epoch')
if current ~= ARGV[1] then return {'FENCED', current or '0'} end
local stored = redis.call('HGET', meta, 'schema') or '0'
if stored ~= ARGV[2] then return {'SCHEMA', stored} end
local t = redis.call('TYPE', state).ok
if t ~= 'none' and t ~= 'hash' then return {'WRONGTYPE', state, t} end

local n_puts = tonumber(ARGV[4])
local dels_at = 5 + 2 * n_puts
local n_dels = tonumber(ARGV[dels_at])
if not n_dels or dels_at + n_dels ~= #ARGV then return {'BADARGS', 'argument count'} end

-- Bounded chunks: unpack() is limited by the C stack, and an error after
-- the first write would leave a half-migrated state.
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
chunked('HSET', 5, n_puts, 2)
chunked('HDEL', dels_at + 1, n_dels, 1)
redis.call('HSET', meta, 'schema', ARGV[3])
return {'OK', redis.call('HINCRBY', meta, 'seq', 1)}
