-- Turn an in-flight record into a completed one, only for the token that claimed it.
-- The fingerprint, the claim time and the place line are kept: a retry must still match them.
-- KEYS[1] - record key
-- ARGV[1] - owner token
-- ARGV[2] - record TTL in milliseconds
-- ARGV[3] - response status
-- ARGV[4] - response body size in bytes
-- ARGV[5] - '1' if the body is stored, '0' if it was too large
-- ARGV[6] - response headers: 'name: value' lines and a blank line (layout.py)
-- ARGV[7] - response body ('' when not stored)
-- return {1, held_ms} if completed, {0, 0} if the lease was lost (the record expired or another token owns it)
local rec = redis.call('GET', KEYS[1])
if not rec then
  return {0, 0}
end
local fp, token, created, place = string.match(rec, '^F (%S+) (%S+) %d+ (%d+) %d+ %d+ %S*\n(.*)$')
if token ~= ARGV[1] then
  return {0, 0}
end
local t = redis.call('TIME')
local held = t[1] * 1000 + math.floor(t[2] / 1000) - tonumber(created)
redis.call('SET', KEYS[1],
  'C ' .. fp .. ' ' .. created .. ' ' .. held .. ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5] .. '\n'
    .. place .. ARGV[6] .. ARGV[7],
  'PX', ARGV[2])
return {1, held}
