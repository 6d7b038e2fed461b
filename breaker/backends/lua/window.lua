-- The sliding window, shared by every breaker script: RedisBackend places it after
-- common.lua (which declares WIN, window_load, window_put and window_stats) in each script.
-- The window (see breaker/window.py, the same algorithm in Python): buckets c<second>,
-- f<second>, s<second> (calls, failures, slow calls) and one field WINDOW_META holding
-- "calls failures slow head last lc lf ls": the running sums of the buckets still in the
-- window, the oldest second that may still hold a bucket, and the newest bucket with its
-- three counts (so that an outcome is written with one HSET). A record call reads the sums
-- and subtracts only the buckets that expired since the last call (each bucket is read once,
-- when it expires), so its cost does not grow with the window's length. The field is named
-- like an expired bucket, so that a script from before the running sums ignores it (and
-- drops it when it records: a window without it is summed again from its buckets, once).
local WINDOW_META = 'm0'

local function window_empty()
  return {calls = 0, failures = 0, slow = 0, head = nil, last = nil, lc = 0, lf = 0, ls = 0}
end

-- The stored window, with the sums of every bucket it holds (expired or not).
local function window_read()
  local raw = redis.call('HGET', K_WINDOW, WINDOW_META)
  if raw then
    local n = {}
    for x in string.gmatch(raw, '%-?%d+') do
      n[#n + 1] = tonumber(x)
    end
    if #n == 8 then
      return {calls = n[1], failures = n[2], slow = n[3], head = n[4], last = n[5], lc = n[6], lf = n[7], ls = n[8]}
    end
  end
  local w = window_empty()
  local flat = redis.call('HGETALL', K_WINDOW)
  local t = {}
  for i = 1, #flat, 2 do
    local kind, second = string.sub(flat[i], 1, 1), tonumber(string.sub(flat[i], 2))
    local n = tonumber(flat[i + 1]) or 0
    if flat[i] ~= WINDOW_META and second then
      t[flat[i]] = n
      if w.head == nil or second < w.head then w.head = second end
      if w.last == nil or second > w.last then w.last = second end
      if kind == 'c' then
        w.calls = w.calls + n
      elseif kind == 'f' then
        w.failures = w.failures + n
      elseif kind == 's' then
        w.slow = w.slow + n
      end
    end
  end
  if w.last ~= nil then
    local sec = string.format('%d', w.last)
    w.lc, w.lf, w.ls = t['c' .. sec] or 0, t['f' .. sec] or 0, t['s' .. sec] or 0
  end
  w.dirty = true
  return w
end

-- Subtracts from `w` the buckets older than the window at `now`; with `write`, deletes them.
-- Reads the seconds from w.head up to the window's start, or the whole hash when it holds
-- fewer buckets than that (a window idle for a long time).
local function window_expire(w, now, window, write)
  local oldest = math.floor(now / 1000) - window + 1
  if w.head == nil or w.head >= oldest then
    return w
  end
  local gone = {}
  local function drop(field, n)
    local kind = string.sub(field, 1, 1)
    if kind == 'c' then
      w.calls = w.calls - n
    elseif kind == 'f' then
      w.failures = w.failures - n
    else
      w.slow = w.slow - n
    end
    gone[#gone + 1] = field
  end
  if (oldest - w.head) * 3 > redis.call('HLEN', K_WINDOW) then
    local flat = redis.call('HGETALL', K_WINDOW)
    for i = 1, #flat, 2 do
      local second = tonumber(string.sub(flat[i], 2))
      if flat[i] ~= WINDOW_META and second and second < oldest then
        drop(flat[i], tonumber(flat[i + 1]))
      end
    end
  else
    for from = w.head, oldest - 1, 150 do
      local fields = {}
      for second = from, math.min(from + 149, oldest - 1) do
        local sec = string.format('%d', second)
        fields[#fields + 1] = 'c' .. sec
        fields[#fields + 1] = 'f' .. sec
        fields[#fields + 1] = 's' .. sec
      end
      local values = redis.call('HMGET', K_WINDOW, unpack(fields))
      for i = 1, #fields do
        if values[i] then
          drop(fields[i], tonumber(values[i]))
        end
      end
    end
  end
  w.head = oldest
  if w.calls <= 0 then
    -- Empty: the next bucket starts it again (and no field is left behind).
    w.calls, w.failures, w.slow, w.head, w.last, w.lc, w.lf, w.ls = 0, 0, 0, nil, nil, 0, 0, 0
    if write then
      redis.call('DEL', K_WINDOW)
      gone = {}
    end
  end
  if write then
    -- In chunks: unpack() has a limit on how many values it returns.
    for i = 1, #gone, 500 do
      redis.call('HDEL', K_WINDOW, unpack(gone, i, math.min(i + 499, #gone)))
    end
    w.dirty = true
  end
  return w
end

local function window_save(w)
  if w.head == nil then
    redis.call('HDEL', K_WINDOW, WINDOW_META)
  else
    redis.call('HSET', K_WINDOW, WINDOW_META, string.format('%d %d %d %d %d %d %d %d',
      w.calls, w.failures, w.slow, w.head, w.last, w.lc, w.lf, w.ls))
  end
  w.dirty = false
end

-- This script call's window, expired to `now` (read and written once per call).
window_load = function(now, window)
  if WIN == nil then
    WIN = window_expire(window_read(), now, window, true)
    if WIN.dirty then
      window_save(WIN)
    end
  end
  return WIN
end

-- Adds outcomes to the bucket of `now` and to the sums. A clock that went back adds to the
-- newest bucket, so that buckets only ever start in time order after the head.
window_put = function(now, window, calls, failures, slow)
  local w = window_load(now, window)
  local second = math.floor(now / 1000)
  if w.head == nil then
    w.head, w.last, w.lc, w.lf, w.ls = second, second, 0, 0, 0
  elseif second > w.last then
    w.last, w.lc, w.lf, w.ls = second, 0, 0, 0
  end
  w.lc, w.lf, w.ls = w.lc + calls, w.lf + failures, w.ls + slow
  w.calls, w.failures, w.slow = w.calls + calls, w.failures + failures, w.slow + slow
  local sec = string.format('%d', w.last)
  redis.call('HSET', K_WINDOW, 'c' .. sec, w.lc, 'f' .. sec, w.lf, 's' .. sec, w.ls, WINDOW_META,
    string.format('%d %d %d %d %d %d %d %d', w.calls, w.failures, w.slow, w.head, w.last, w.lc, w.lf, w.ls))
  w.dirty = false
  return w
end

-- The window's figures at `now`, writing nothing.
window_stats = function(now, window)
  local w = WIN or window_expire(window_read(), now, window, false)
  return {calls = w.calls, failures = w.failures, slow = w.slow}
end
