//! The record of one admission decision, and the query over the decision log. The admission
//! webhooks write records, the store keeps them, `audit` reads them back.

use serde::{Deserialize, Serialize};

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

/// Newest first; `after` is the last id of the previous page (ids are UUIDv7, time-ordered).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DecisionQuery {
    /// SCIM id of the person (resolve userNames to ids before querying).
    pub user_id: Option<String>,
    /// As the request named the requester (`oidc:alice@…`, `system:serviceaccount:…`).
    pub requester: Option<String>,
    /// Lower-cased SCIM group name the person was in at decision time.
    pub group: Option<String>,
    pub namespace: Option<String>,
    pub kind: Option<String>,
    pub action: Option<String>,
    /// `allowed`, `denied` or `dry-run-deny`.
    pub outcome: Option<String>,
    pub rule: Option<String>,
    /// RFC 3339, inclusive.
    pub from: Option<String>,
    /// RFC 3339, exclusive.
    pub to: Option<String>,
    pub after: Option<String>,
    pub limit: u32,
    /// One webhook call (`request.uid`; kube-apiserver gives every call its own).
    pub request_uid: Option<String>,
    /// The stamp a decision is behind (its attestation's `sid`).
    pub stamp_id: Option<String>,
}

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 10_000;
