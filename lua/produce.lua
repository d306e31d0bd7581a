#!lua
-- Add entries to a stream, each at most once per idempotency key.  The
-- first time a key is seen, the entry is added and the key remembers
-- "<id>\n<fingerprint of the fields>"; later with the same fields nothing
-- is added and the first id is returned; with other fields the whole call
-- is refused.  Every check comes before the first write, so a refused batch
-- adds nothing.
--
-- KEYS[1] stream, KEYS[2..] dedup keys (one per message that has an
-- idempotency key, in message order; two messages may share one).
-- ARGV[1] dedup TTL in ms, ARGV[2] trim option: '' | 'MAXLEN' | 'MINID',
-- ARGV[3] its argument, ARGV[4] number of messages, then per message:
--   index into KEYS of its dedup key (0: none), n_fields, (field, value)...
--
-- Trimming (MAXLEN ~ / MINID ~) is recorded in the stream's
-- max-deleted-entry-id, which Redis 7.0 moves on XDEL only: the id just
-- before the first entry left, an upper bound of what went, so that
-- readers with a cursor below it learn that entries are gone.
--
-- Returns {"OK", id1, dup1, id2, dup2, ...} (dup 1: already added before);
--         {"CONFLICT", message index, KEYS index, stored id or ""};
--         {"WRONGTYPE", key, type}; {"BADARGS", message}.

-- #include ids.lua

-- The fingerprint covers the fields in order, each length-prefixed so that
-- no two different field lists encode alike.
local function fingerprint(at, n_fields)
  local parts = {}
  for j = 0, 2 * n_fields - 1 do
    local s = ARGV[at + j]
    parts[j + 1] = #s .. ':' .. s
  end
  return redis.sha1hex(table.concat(parts))
end

local stream = KEYS[1]
local t = redis.call('TYPE', stream).ok
if t ~= 'none' and t ~= 'stream' then return {'WRONGTYPE', stream, t} end

local ttl = tonumber(ARGV[1])
local trim, trim_arg = ARGV[2], ARGV[3]
local n = tonumber(ARGV[4])
if not ttl or ttl < 1 or not n or n < 1 then return {'BADARGS', 'bad ttl or count'} end
if trim ~= '' and trim ~= 'MAXLEN' and trim ~= 'MINID' then
  return {'BADARGS', 'bad trim option'}
end

local msgs = {}
local pos = 5
for i = 1, n do
  local k, n_fields = tonumber(ARGV[pos]), tonumber(ARGV[pos + 1])
  if not k or (k ~= 0 and (k < 2 or k > #KEYS)) then
    return {'BADARGS', 'bad key index of message ' .. i}
  end
  -- unpack() below is bounded by Lua's C stack (about 8000 values).
  if not n_fields or n_fields < 1 or n_fields > 3000 then
    return {'BADARGS', 'message ' .. i .. ' has no fields or more than 3000'}
  end
  msgs[i] = {key = k, at = pos + 2, n_fields = n_fields}
  pos = pos + 2 + 2 * n_fields
end
if pos - 1 ~= #ARGV then return {'BADARGS', 'argument count'} end

-- Dedup checks, all before any write.
local first_of = {}   -- dedup key -> message that claims it in this call
for i = 1, n do
  local m = msgs[i]
  if m.key > 0 then
    local key = KEYS[m.key]
    m.fp = fingerprint(m.at, m.n_fields)
    local prior = first_of[key]
    if prior then
      if msgs[prior].fp ~= m.fp then
        return {'CONFLICT', i, m.key, msgs[prior].existing or ''}
      end
      m.dup_of = prior
    else
      local kt = redis.call('TYPE', key).ok
      if kt == 'string' then
        local id, fp = string.match(redis.call('GET', key), '^(%d+%-%d+)\n(%x+)$')
        if not id or fp ~= m.fp then return {'CONFLICT', i, m.key, id or ''} end
        m.existing = id
      elseif kt ~= 'none' then
        return {'WRONGTYPE', key, kt}
      end
      first_of[key] = i
    end
  end
end

local first_before
if trim ~= '' then first_before = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1] end

-- Writes.
local out = {'OK'}
local ids = {}
for i = 1, n do
  local m = msgs[i]
  local id, dup = m.existing, 1
  if not id and m.dup_of then id = ids[m.dup_of] end
  if not id then
    local args = {'XADD', stream}
    if trim ~= '' then
      args[3], args[4], args[5] = trim, '~', trim_arg
    end
    args[#args + 1] = '*'
    for j = 0, 2 * m.n_fields - 1 do args[#args + 1] = ARGV[m.at + j] end
    id, dup = redis.call(unpack(args)), 0
    if m.key > 0 then
      redis.call('SET', KEYS[m.key], id .. '\n' .. m.fp, 'PX', ttl)
    end
  end
  ids[i] = id
  out[#out + 1] = id
  out[#out + 1] = dup
end

if first_before then
  local first_after = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
  if not first_after or first_after[1] ~= first_before[1] then
    local info = redis.call('XINFO', 'STREAM', stream)
    local f = {}
    for i = 1, #info, 2 do f[info[i]] = info[i + 1] end
    local bound = first_after and id_prev(first_after[1]) or f['last-generated-id']
    if id_cmp(bound, f['max-deleted-entry-id']) > 0 then
      redis.call('XSETID', stream, f['last-generated-id'], 'MAXDELETEDID', bound)
    end
  end
end
return out
