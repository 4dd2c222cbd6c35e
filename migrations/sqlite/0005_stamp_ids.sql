-- Decisions carry the id of the stamp the request carried (kube-apiserver gives every webhook call
-- its own request uid, so the stamp id is what ties a stamp on a live object to its decision).
ALTER TABLE decisions ADD COLUMN stamp_id TEXT;
CREATE INDEX decisions_stamp_id ON decisions (stamp_id) WHERE stamp_id IS NOT NULL;
