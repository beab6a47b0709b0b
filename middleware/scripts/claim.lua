-- Claim an idempotency key, or report what already holds it, in one round trip.
-- KEYS[1] - record key
-- ARGV[1] - owner token (new, random)
-- ARGV[2] - request fingerprint
-- ARGV[3] - lease in milliseconds
-- ARGV[4] - method      ARGV[5] - route     ARGV[6] - idempotency key
-- ARGV[7] - scope       ARGV[8] - path      ARGV[9] - owner (host:pid)
-- return {"claimed", now_ms}
--        {"mismatch", state}
--        {"in_flight", pttl_ms}
--        {"completed", status, headers, body, stored, completed_ms, now_ms}
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local rec = redis.call('HMGET', KEYS[1], 'state', 'fp')
local state = rec[1]
if not state then
  redis.call('HSET', KEYS[1],
    'v', '1', 'state', 'in_flight', 'token', ARGV[1], 'fp', ARGV[2], 'lease', ARGV[3],
    'method', ARGV[4], 'route', ARGV[5], 'key', ARGV[6], 'scope', ARGV[7], 'path', ARGV[8], 'owner', ARGV[9],
    'created', now, 'renewed', now, 'renewals', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'claimed', now}
end
if rec[2] ~= ARGV[2] then
  return {'mismatch', state}
end
if state == 'in_flight' then
  return {'in_flight', redis.call('PTTL', KEYS[1])}
end
local r = redis.call('HMGET', KEYS[1], 'status', 'headers', 'body', 'stored', 'completed')
return {'completed', r[1], r[2], r[3], r[4], r[5], now}
