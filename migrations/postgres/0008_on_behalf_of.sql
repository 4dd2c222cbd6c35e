-- On an agent's request, the SCIM id of the person whose rights carried the decision
-- (model/decision.rs); NULL for people, service accounts and every record written before.
ALTER TABLE decisions ADD COLUMN on_behalf_of TEXT;
-- `audit query --user` finds a person's records and their agents' records on their behalf.
CREATE INDEX decisions_on_behalf_of ON decisions (on_behalf_of, id) WHERE on_behalf_of IS NOT NULL;
