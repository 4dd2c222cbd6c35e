CREATE TABLE resources (
    rtype      TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    unique_key TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    body       TEXT    NOT NULL,
    PRIMARY KEY (rtype, id)
);
CREATE UNIQUE INDEX resources_unique_key ON resources (rtype, unique_key);

CREATE TABLE tombstones (
    rtype      TEXT NOT NULL,
    id         TEXT NOT NULL,
    unique_key TEXT NOT NULL,
    deleted_at TEXT NOT NULL,
    PRIMARY KEY (rtype, id)
);

CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    scope      TEXT NOT NULL,
    hash       BLOB NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
