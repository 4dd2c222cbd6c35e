-- Every identity commit takes the next number of one gapless sequence and logs the resources it
-- touched under it, so a directory can catch up on exactly the commits it missed.
CREATE TABLE commit_seq (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO commit_seq (id, seq) VALUES (1, 0);

CREATE TABLE changes (
    seq   INTEGER NOT NULL,
    rtype TEXT    NOT NULL,
    id    TEXT    NOT NULL,
    at    TEXT    NOT NULL,
    PRIMARY KEY (seq, rtype, id)
);
