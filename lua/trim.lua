#!lua
-- Trim a stream, never past an entry some consumer group has not
-- processed.  For each group, the lowest id that must stay is the smallest
-- of: the id after its last-delivered-id, its oldest pending id, and (for
-- a streamtx group, whose meta hash exists) the id after its committed
-- offset.  With no limit, everything every group has processed goes; with
-- maxlen and/or max_age_ms, only entries that break a limit (beyond the
-- newest maxlen, or older than max_age) go, and still never one a group
-- has not processed.
-- With no group, nothing counts as processed and nothing is trimmed.
--
-- KEYS[1] stream, KEYS[2..n+1] meta hash of each group, in ARGV order
-- ARGV[1] n, ARGV[2..n+1] group names, ARGV[n+2] maxlen (0: none),
-- ARGV[n+3] max age in ms (0: none), ARGV[n+4] (optional) an id: no entry
-- after it goes (the offset of a sink that holds its own, the archive)
--
-- Redis 7.0 moves a stream's max-deleted-entry-id on XDEL only, not on
-- trimming; readers use it to tell that entries after their cursor are
-- gone (STX_EWINDOW_EXPIRED), so the highest id trimmed here is recorded
-- in it with XSETID ... MAXDELETEDID.
--
-- Returns {"OK", deleted, lowest id kept or ""}; {"RETRY"} when the groups
-- are not those named in ARGV (the caller lists them again);
-- {"WRONGTYPE", key, type}; {"BADARGS", message}.

-- #include ids.lua

local stream = KEYS[1]
local t = redis.call('TYPE', stream).ok
if t == 'none' then return {'OK', 0, ''} end
if t ~= 'stream' then return {'WRONGTYPE', stream, t} end
local n = tonumber(ARGV[1])
if not n or #KEYS ~= n + 1 or (#ARGV ~= n + 3 and #ARGV ~= n + 4) then
  return {'BADARGS', 'argument count'}
end
local maxlen, max_age = tonumber(ARGV[n + 2]), tonumber(ARGV[n + 3])
if not maxlen or maxlen < 0 or not max_age or max_age < 0 then
  return {'BADARGS', 'bad maxlen or max age'}
end
for i = 2, #KEYS do
  t = redis.call('TYPE', KEYS[i]).ok
  if t ~= 'none' and t ~= 'hash' then return {'WRONGTYPE', KEYS[i], t} end
end

local groups = redis.call('XINFO', 'GROUPS', stream)
if #groups ~= n or n == 0 then
  if n == 0 and #groups == 0 then return {'OK', 0, ''} end
  return {'RETRY'}
end
local index = {}
for i = 1, n do index[ARGV[1 + i]] = i end

local keep        -- the lowest id that must stay
local function lower(id)
  -- nil: no id follows the highest one, so this bound holds nothing back
  if id and (not keep or id_cmp(id, keep) < 0) then keep = id end
end
for _, g in ipairs(groups) do
  local info = {}
  for j = 1, #g, 2 do info[g[j]] = g[j + 1] end
  local i = index[info['name']]
  if not i then return {'RETRY'} end
  index[info['name']] = nil
  lower(id_next(info['last-delivered-id']))
  local p = redis.call('XPENDING', stream, info['name'])
  if p[1] > 0 then lower(p[2]) end
  if redis.call('EXISTS', KEYS[1 + i]) == 1 then
    lower(id_next(redis.call('HGET', KEYS[1 + i], 'offset') or '0-0'))
  end
end

-- The limits: the lowest id they keep is the later of the two cut points
-- (an entry that breaks either limit goes).
local policy
local function raise(id)
  if not policy or id_cmp(id, policy) > 0 then policy = id end
end
if maxlen > 0 then
  local len = redis.call('XLEN', stream)
  if len <= maxlen then
    raise('0-0')
  else
    -- The oldest entry maxlen keeps, fetched from whichever end is nearer.
    local r
    if len - maxlen < maxlen then
      r = redis.call('XRANGE', stream, '-', '+', 'COUNT', len - maxlen + 1)
    else
      r = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', maxlen)
    end
    raise(r[#r][1])
  end
end
if max_age > 0 then
  local now = redis.call('TIME')
  local cut = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - max_age
  if cut < 0 then cut = 0 end
  raise(string.format('%.0f', cut) .. '-0')
end
if policy then lower(policy) end
if #ARGV == n + 4 then lower(id_next(ARGV[n + 4])) end

if not keep or keep == '0-0' then return {'OK', 0, keep or ''} end
-- The highest id that goes.
local below = redis.call('XREVRANGE', stream, '(' .. keep, '-', 'COUNT', 1)[1]

-- Writes.
local deleted = redis.call('XTRIM', stream, 'MINID', keep)
if deleted > 0 and below then
  local info = redis.call('XINFO', 'STREAM', stream)
  local f = {}
  for i = 1, #info, 2 do f[info[i]] = info[i + 1] end
  if id_cmp(below[1], f['max-deleted-entry-id']) > 0 then
    redis.call('XSETID', stream, f['last-generated-id'], 'MAXDELETEDID', below[1])
  end
end
return {'OK', deleted, keep}
