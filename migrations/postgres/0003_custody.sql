-- Whether the caller presented a verified client certificate (--admission-client-ca).
ALTER TABLE decisions ADD COLUMN authenticated BOOLEAN NOT NULL DEFAULT FALSE;
-- Each record's place in the hash chain of the replica that wrote it (audit/chain.rs); NULL on
-- records written before the chain existed.
ALTER TABLE decisions ADD COLUMN replica TEXT;
ALTER TABLE decisions ADD COLUMN seq BIGINT;
ALTER TABLE decisions ADD COLUMN prev_hash TEXT;
ALTER TABLE decisions ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX decisions_chain ON decisions (replica, seq) WHERE replica IS NOT NULL;
-- Signed statements about the chains: starts, checkpoints, prune markers.
CREATE TABLE decision_marks (
    replica   TEXT   NOT NULL,
    seq       BIGINT NOT NULL,
    kind      TEXT   NOT NULL,
    hash      TEXT   NOT NULL,
    at        TEXT   NOT NULL,
    signature TEXT   NOT NULL,
    PRIMARY KEY (replica, kind, seq)
);
