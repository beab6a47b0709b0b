-- Append an entry to the capped audit list (newest first), atomically.
-- KEYS[1] - audit list
-- ARGV[1] - entry (JSON)
-- ARGV[2] - how many entries to keep
-- return the list's length
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
return redis.call('LLEN', KEYS[1])
