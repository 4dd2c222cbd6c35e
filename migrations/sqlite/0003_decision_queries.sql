-- Queries page newest-first by id (UUIDv7, time-ordered) within a user or a namespace; the
-- (column, at) indexes they replace cost insert speed without serving that order.
DROP INDEX decisions_user_at;
DROP INDEX decisions_namespace_at;
CREATE INDEX decisions_user_id ON decisions (user_id, id);
CREATE INDEX decisions_namespace_id ON decisions (namespace, id);
