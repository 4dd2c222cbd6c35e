-- userName / displayName keys fold ASCII case only (src/model/name.rs `fold`); they were
-- lower-cased with Unicode rules, which made look-alikes one key (KELVIN SIGN U+212A became `k`).
-- Recompute each key from the stored name with translate(), which maps exactly A-Z to a-z
-- (lower() would follow the database's locale, which folds more). The new keys are finer than the
-- old ones (two names with one new key had one old key), so no two rows can collide, not even
-- halfway through the update. Migrations run under an advisory lock: one replica does this.
-- Tombstones keep their keys: they hold no name to recompute from, and an old key differs from
-- the new one only for names with non-ASCII capitals or look-alikes; such a deleted user is then
-- "unknown" rather than "deleted" to admission, a denial either way.
UPDATE resources
SET unique_key = translate((body::jsonb) ->> 'userName', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')
WHERE rtype = 'User' AND jsonb_typeof((body::jsonb) -> 'userName') = 'string';

UPDATE resources
SET unique_key = translate((body::jsonb) ->> 'displayName', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')
WHERE rtype = 'Group' AND jsonb_typeof((body::jsonb) -> 'displayName') = 'string';
