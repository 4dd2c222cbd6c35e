//! Audit: the record of every admission decision, written off the hot path in batches.
//! Must not sit on the admission path: handlers hand records to the recorder and move on.

pub mod api;
pub mod query;
pub mod recorder;
pub mod replay;
pub mod verify;
pub mod who;

/// One admission decision, with what a later replay needs (run_as, templates, submitter).
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    pub id: String,
    pub at: String,
    pub request_uid: String,
    pub hook: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub action: String,
    /// As the request named it (`oidc:alice@…`, `system:serviceaccount:…`).
    pub requester: String,
    pub user_id: Option<String>,
    /// Lower-cased SCIM group names at decision time, comma-separated.
    pub groups: String,
    pub rule: Option<String>,
    /// `allowed`, `denied` or `dry-run-deny`.
    pub outcome: String,
    /// `enforce` or `dry-run`.
    pub mode: String,
    pub reason: String,
    pub latency_us: i64,
    pub policy: String,
    pub run_as: String,
    pub templates: String,
    pub submitter_id: Option<String>,
    /// The id of the stamp the request carried for its action (`sid` in the attestation).
    pub stamp_id: Option<String>,
}
