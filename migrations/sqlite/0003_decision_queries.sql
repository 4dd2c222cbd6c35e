-- Queries page newest-first by id (UUIDv7, time-ordered) within a user or namespace.
CREATE INDEX decisions_user_id ON decisions (user_id, id);
CREATE INDEX decisions_namespace_id ON decisions (namespace, id);
