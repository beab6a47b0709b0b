-- Turn an in-flight record into a completed one, only for the token that claimed it (layout.py).
-- The fingerprint, the claim time and the place line are kept: a retry must still match them.
-- KEYS[1] - record key
-- ARGV[1] - owner token
-- ARGV[2] - '<now> <ttl> <status> <size> <stored>': now in ms since the epoch (the app's clock, as for the claim),
--           the record's TTL in ms, the response status, its body size in bytes, and 1 if the body is stored
--           (0 if it was too large); the last three go into the record as they are
-- ARGV[3] - response headers: 'name: value' lines and a blank line
-- ARGV[4] - response body ('' when not stored)
-- return {1, held_ms} if completed, {0, 0} if the lease was lost (the record expired or another token owns it)
local now, ttl, response = string.match(ARGV[2], '^(%d+) (%d+) (%d+ %d+ [01])$')
if not now then
  return redis.error_reply('ERR idemscope complete: malformed ARGV[2]')
end
local rec = redis.call('GET', KEYS[1])
if not rec then
  return {0, 0}
end
local fp, token, created, place = string.match(rec, '^F (%S+) (%S+) %d+ (%d+) %d+ %d+ %S*\n(.*)$')
if token ~= ARGV[1] then
  return {0, 0}
end
local held = math.max(0, tonumber(now) - tonumber(created))
redis.call('SET', KEYS[1],
  'C ' .. fp .. ' ' .. created .. ' ' .. held .. ' ' .. response .. '\n' .. place .. ARGV[3] .. ARGV[4],
  'PX', ttl)
return {1, held}
