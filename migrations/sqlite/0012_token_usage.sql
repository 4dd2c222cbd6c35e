-- Token expiry and use (token.rs): `expires_at` from `token create --expires` (NULL: never);
-- `last_used_at` / `last_write_at` are flushed from memory every 30 s and at shutdown, each
-- replica writing the later of its time and the stored one. RFC 3339 UTC with milliseconds, so
-- they order as text.
ALTER TABLE tokens ADD COLUMN expires_at TEXT;
ALTER TABLE tokens ADD COLUMN last_used_at TEXT;
ALTER TABLE tokens ADD COLUMN last_write_at TEXT;
