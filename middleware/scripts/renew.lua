-- Extend the lease of an in-flight record, only for the token that holds it (heartbeat).
-- KEYS[1] - record key
-- ARGV[1] - owner token
-- ARGV[2] - lease in milliseconds
-- return 1 if renewed, 0 if the lease was lost
local rec = redis.call('HMGET', KEYS[1], 'state', 'token')
if rec[1] ~= 'in_flight' or rec[2] ~= ARGV[1] then
  return 0
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('HSET', KEYS[1], 'renewed', now, 'lease', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'renewals', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
