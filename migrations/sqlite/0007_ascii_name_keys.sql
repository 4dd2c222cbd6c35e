-- userName / displayName keys fold ASCII case only (src/model/name.rs `fold`); they were
-- lower-cased with Unicode rules, which made look-alikes one key (KELVIN SIGN U+212A became `k`).
-- Recompute each key from the stored name. SQLite's built-in lower() folds ASCII letters only,
-- exactly `fold`. The new keys are finer than the old ones (two names with one new key had one
-- old key), so no two rows can collide, not even halfway through the update.
-- Tombstones keep their keys: they hold no name to recompute from, and an old key differs from
-- the new one only for names with non-ASCII capitals or look-alikes; such a deleted user is then
-- "unknown" rather than "deleted" to admission, a denial either way.
UPDATE resources
SET unique_key = CASE
    WHEN json_valid(body) THEN CASE
        WHEN json_type(body, '$.userName') = 'text' THEN lower(json_extract(body, '$.userName'))
        ELSE unique_key
    END
    ELSE unique_key
END
WHERE rtype = 'User';

UPDATE resources
SET unique_key = CASE
    WHEN json_valid(body) THEN CASE
        WHEN json_type(body, '$.displayName') = 'text' THEN lower(json_extract(body, '$.displayName'))
        ELSE unique_key
    END
    ELSE unique_key
END
WHERE rtype = 'Group';
