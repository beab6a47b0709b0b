-- Extend the lease of an in-flight record, only for the token that holds it (heartbeat).
-- KEYS[1] - record key
-- ARGV[1] - owner token
-- ARGV[2] - lease in milliseconds
-- ARGV[3] - now, in ms since the epoch (the app's clock)
-- return 1 if renewed, 0 if the lease was lost
local head = redis.call('GETRANGE', KEYS[1], 0, 511)
if string.match(head, '^F %S+ (%S+) ') ~= ARGV[1] then
  return 0
end
local rec = redis.call('GET', KEYS[1])
local fp, created, renewals, rest = string.match(rec, '^F (%S+) %S+ %d+ (%d+) %d+ (%d+) (.*)$')
redis.call('SET', KEYS[1],
  'F ' .. fp .. ' ' .. ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. created .. ' ' .. ARGV[3] .. ' ' .. (renewals + 1) .. ' ' .. rest,
  'PX', ARGV[2])
return 1
