-- On an update, the decision whose stamp the object carried before the write: tells a write the
-- API server admitted twice (a GuaranteedUpdate retry) from two writes (model/decision.rs).
ALTER TABLE decisions ADD COLUMN prior_decision TEXT;
