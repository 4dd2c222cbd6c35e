CREATE TABLE decisions (
    id           TEXT    PRIMARY KEY,
    at           TEXT    NOT NULL,
    request_uid  TEXT    NOT NULL,
    hook         TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    namespace    TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    requester    TEXT    NOT NULL,
    user_id      TEXT,
    groups       TEXT    NOT NULL,
    rule         TEXT,
    outcome      TEXT    NOT NULL,
    mode         TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    latency_us   INTEGER NOT NULL,
    policy       TEXT    NOT NULL,
    run_as       TEXT    NOT NULL,
    templates    TEXT    NOT NULL,
    submitter_id TEXT
);
CREATE INDEX decisions_at ON decisions (at);
CREATE INDEX decisions_user_at ON decisions (user_id, at);
CREATE INDEX decisions_namespace_at ON decisions (namespace, at);
