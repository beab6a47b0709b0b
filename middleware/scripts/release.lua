-- Delete an in-flight record, only for the token that holds it (a compare-and-delete).
-- A record that completed in the meantime is never deleted.
-- KEYS[1] - record key
-- ARGV[1] - owner token
-- return 1 if released, 0 if the record is gone, completed, or owned by another token
local head = redis.call('GETRANGE', KEYS[1], 0, 511)
if string.match(head, '^F %S+ (%S+) ') ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
