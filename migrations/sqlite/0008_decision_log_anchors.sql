-- The decision log's anchors (src/audit/chain): every replica's latest checkpoint is read from
-- its start mark at each checkpoint, and prune and start read one kind of mark at a time.
CREATE INDEX decision_marks_kind ON decision_marks (kind, replica, seq);
-- Records from before the chains, in the order the legacy seal hashes them: (at, id).
CREATE INDEX decisions_legacy ON decisions (at, id) WHERE replica IS NULL;
