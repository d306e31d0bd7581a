-- The checks every script that writes a group's meta makes before anything
-- else, shared so that a new check lands in all of them at once.  Spliced
-- into those scripts at build time (lua/embed.cmake).
--
-- guard(meta, epoch, token, seq) reads the meta hash once and returns its
-- values {epoch, token, seq, offset, writer, replay_until}, or nil and the
-- refusal to return:
--   {"FENCED", stored epoch or "", "1" when a token is stored else "0"}:
--     the caller no longer holds the epoch (a newer processor took over, an
--     operator reset the group, or Redis lost or rolled back the meta hash);
--   {"SEQ", stored seq, stored offset, stored writer}: Redis is not at the
--     commit the caller expects (seq nil: not checked).
local function guard(meta, epoch, token, seq)
  local m = redis.call('HMGET', meta, 'epoch', 'token', 'seq', 'offset', 'writer', 'replay_until')
  if m[1] ~= epoch or m[2] ~= token then
    return nil, {'FENCED', m[1] or '', m[2] and '1' or '0'}
  end
  m[3] = m[3] or '0'
  m[4] = m[4] or '0-0'
  m[5] = m[5] or ''
  if seq and m[3] ~= seq then
    return nil, {'SEQ', m[3], m[4], m[5]}
  end
  return m
end

-- nil and the key's type when key holds the wanted type (or nothing), else
-- the refusal {"WRONGTYPE", key, type}.  want: 'stream' or 'hash'.
local function wrong_type(key, want, must_exist)
  local t = redis.call('TYPE', key).ok
  if t == want or (t == 'none' and not must_exist) then return nil, t end
  if t == 'none' then return {'NOGROUP', 'stream ' .. key .. ' does not exist'} end
  return {'WRONGTYPE', key, t}
end

-- Whether XADD * can still add to stream key (of type t, as wrong_type()
-- returned it): a stream whose last id is the highest possible id refuses
-- every new entry, which inside a script would fail after earlier writes.
local function stream_full(key, t)
  if t ~= 'stream' then return false end
  local info = redis.call('XINFO', 'STREAM', key)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      return info[i + 1] == '18446744073709551615-18446744073709551615'
    end
  end
  return false
end

-- The last id delivered to group (nil when the group does not exist).
local function group_last_delivered(stream, group)
  local groups = redis.call('XINFO', 'GROUPS', stream)
  for _, g in ipairs(groups) do
    local name, last
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    if name == group then return last end
  end
  return nil
end

-- XACK as a script's first write: when the group is gone it fails before
-- anything was written, so the script can still refuse cleanly.  Returns
-- nil, or the reply to return.
local function ack_first(stream, group, ...)
  local acked = redis.pcall('XACK', stream, group, ...)
  if type(acked) == 'table' and acked.err then
    if string.sub(acked.err, 1, 7) == 'NOGROUP' then return {'NOGROUP', acked.err} end
    return redis.error_reply(acked.err)
  end
  return nil
end
