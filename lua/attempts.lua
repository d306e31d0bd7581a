-- Handler attempts at the entries of a recovery batch (read.lua and
-- history.lua share the rules, written down in read.lua's header).
-- Spliced into those scripts at build time (lua/embed.cmake).
--
-- count_attempts(attempts, run, failed, ids, size) reads the records of
-- ids[1..size], counts one more attempt where another run died holding the
-- entry alone (a record without the mark "h") and where this run's handler
-- failed on it (failed), writes the records back where they count, and
-- returns the counts (attempts so far, this one not included).
local function count_attempts(attempts, run, failed, ids, size)
  local recs = redis.call('HMGET', attempts, unpack(ids, 1, size))
  local counts = {}
  for i = 1, size do
    local id, n = ids[i], 0
    local r, c, mark = string.match(recs[i] or '', '^([^:]*):(%d+):?(%a?)$')
    if r then
      n = tonumber(c)
      if r ~= run and mark ~= 'h' then n = n + 1 end
    end
    if id == failed then n = n + 1 end
    if r or id == failed or size == 1 then redis.call('HSET', attempts, id, run .. ':' .. n) end
    counts[i] = n
  end
  return counts
end
