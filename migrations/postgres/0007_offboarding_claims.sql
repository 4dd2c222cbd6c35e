-- Which replica sweeps what a departed person left (offboarding/sweep.rs): one row per person and
-- departure, held by one replica until `until` (RFC 3339), then free for another to take over
-- unless `done`.
CREATE TABLE offboarding_claims (
    user_id   TEXT    NOT NULL,
    departure TEXT    NOT NULL,
    replica   TEXT    NOT NULL,
    until     TEXT    NOT NULL,
    done      BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (user_id, departure)
);
