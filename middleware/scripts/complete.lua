-- Turn an in-flight record into a completed one, only for the token that claimed it.
-- The fingerprint and request fields are kept: a retry must still match them.
-- KEYS[1] - record key
-- ARGV[1] - owner token
-- ARGV[2] - record TTL in milliseconds
-- ARGV[3] - response status
-- ARGV[4] - response headers (JSON list of [name, value] pairs)
-- ARGV[5] - response body ('' when not stored)
-- ARGV[6] - '1' if the body is stored, '0' if it was too large
-- ARGV[7] - response body size in bytes
-- return {1, held_ms} if completed, {0, 0} if the lease was lost (the record expired or another token owns it)
local rec = redis.call('HMGET', KEYS[1], 'state', 'token', 'created')
if rec[1] ~= 'in_flight' or rec[2] ~= ARGV[1] then
  return {0, 0}
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('HSET', KEYS[1], 'state', 'completed', 'status', ARGV[3], 'headers', ARGV[4], 'body', ARGV[5],
  'stored', ARGV[6], 'size', ARGV[7], 'completed', now, 'ttl', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, now - tonumber(rec[3])}
