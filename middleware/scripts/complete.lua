-- Turn an in-flight record into a completed one, only for the token that claimed it (layout.py).
-- The fingerprint, the claim time and the place line are kept: a retry must still match them.
-- KEYS[1] - record key
-- ARGV[1] - owner token
-- ARGV[2] - now, in ms since the epoch (the app's clock, as for the claim)
-- ARGV[3] - record TTL in milliseconds
-- ARGV[4] - response status
-- ARGV[5] - response body size in bytes
-- ARGV[6] - '1' if the body is stored, '0' if it was too large
-- ARGV[7] - response headers: 'name: value' lines and a blank line
-- ARGV[8] - response body ('' when not stored)
-- return {1, held_ms} if completed, {0, 0} if the lease was lost (the record expired or another token owns it)
local rec = redis.call('GET', KEYS[1])
if not rec then
  return {0, 0}
end
local fp, token, created, place = string.match(rec, '^F (%S+) (%S+) %d+ (%d+) %d+ %d+ %S*\n(.*)$')
if token ~= ARGV[1] then
  return {0, 0}
end
local held = math.max(0, tonumber(ARGV[2]) - tonumber(created))
redis.call('SET', KEYS[1],
  'C ' .. fp .. ' ' .. created .. ' ' .. held .. ' ' .. ARGV[4] .. ' ' .. ARGV[5] .. ' ' .. ARGV[6] .. '\n'
    .. place .. ARGV[7] .. ARGV[8],
  'PX', ARGV[3])
return {1, held}
