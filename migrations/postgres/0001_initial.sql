-- The same tables as the embedded store (see migrations/sqlite), in one migration: times are
-- RFC 3339 text in both backends so the two compare and page identically.
CREATE TABLE resources (
    rtype      TEXT   NOT NULL,
    id         TEXT   NOT NULL,
    unique_key TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    body       TEXT   NOT NULL,
    PRIMARY KEY (rtype, id)
);
-- Uniqueness of userName / displayName holds across replicas because the database enforces it.
CREATE UNIQUE INDEX resources_unique_key ON resources (rtype, unique_key);

CREATE TABLE tombstones (
    rtype      TEXT NOT NULL,
    id         TEXT NOT NULL,
    unique_key TEXT NOT NULL,
    deleted_at TEXT NOT NULL,
    PRIMARY KEY (rtype, id)
);
CREATE INDEX tombstones_unique_key ON tombstones (rtype, unique_key);

CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    scope      TEXT NOT NULL,
    hash       BYTEA NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

-- Every identity commit takes the next number (the row lock on this one row serialises commits
-- from all replicas, which keeps the sequence gapless and in commit order) and logs the
-- resources it touched under it.
CREATE TABLE commit_seq (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT  NOT NULL
);
INSERT INTO commit_seq (id, seq) VALUES (1, 0);

CREATE TABLE changes (
    seq   BIGINT NOT NULL,
    rtype TEXT   NOT NULL,
    id    TEXT   NOT NULL,
    at    TEXT   NOT NULL,
    PRIMARY KEY (seq, rtype, id)
);
CREATE INDEX changes_at ON changes (at);

CREATE TABLE decisions (
    id           TEXT   PRIMARY KEY,
    at           TEXT   NOT NULL,
    request_uid  TEXT   NOT NULL,
    hook         TEXT   NOT NULL,
    kind         TEXT   NOT NULL,
    namespace    TEXT   NOT NULL,
    name         TEXT   NOT NULL,
    action       TEXT   NOT NULL,
    requester    TEXT   NOT NULL,
    user_id      TEXT,
    groups       TEXT   NOT NULL,
    rule         TEXT,
    outcome      TEXT   NOT NULL,
    mode         TEXT   NOT NULL,
    reason       TEXT   NOT NULL,
    latency_us   BIGINT NOT NULL,
    policy       TEXT   NOT NULL,
    run_as       TEXT   NOT NULL,
    templates    TEXT   NOT NULL,
    submitter_id TEXT
);
CREATE INDEX decisions_at ON decisions (at);
CREATE INDEX decisions_user_id ON decisions (user_id, id);
CREATE INDEX decisions_namespace_id ON decisions (namespace, id);
