-- Claim an idempotency key, or report what already holds it, in one round trip.
-- A record is one string (layout.py): 'F <fp> <token> ...' while in flight, 'C <fp> ...' once completed.
-- KEYS[1] - record key
-- ARGV[1] - owner token (new, unique)
-- ARGV[2] - request fingerprint (no spaces)
-- ARGV[3] - lease in milliseconds
-- ARGV[4] - owner (host:pid, escaped)
-- ARGV[5] - place: scope, route and (if it differs) path, escaped and space-separated
-- return {"claimed", now_ms}
--        {"mismatch", "F" or "C"}
--        {"in_flight", pttl_ms}
--        {"completed", record, now_ms}
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local rec = redis.call('GET', KEYS[1])
if not rec then
  redis.call('SET', KEYS[1],
    'F ' .. ARGV[2] .. ' ' .. ARGV[1] .. ' ' .. ARGV[3] .. ' ' .. now .. ' ' .. now .. ' 0 ' .. ARGV[4] .. '\n'
      .. ARGV[5] .. '\n',
    'PX', ARGV[3])
  return {'claimed', now}
end
if string.sub(rec, 3, 3 + #ARGV[2]) ~= ARGV[2] .. ' ' then
  return {'mismatch', string.sub(rec, 1, 1)}
end
if string.sub(rec, 1, 1) == 'F' then
  return {'in_flight', redis.call('PTTL', KEYS[1])}
end
return {'completed', rec, now}
