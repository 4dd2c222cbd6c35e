//! The record of one admission decision, and the query over the decision log. The admission
//! webhooks write records, the store keeps them, `audit` reads them back.

use serde::{Deserialize, Serialize};

/// One admission decision, with what a later replay needs (run_as, templates, submitter).
#[derive(Debug, Clone, PartialEq, Default)]
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
    /// The id of the stamp the request carried for its action (`sid` in the attestation); on a
    /// delete, the submit stamp of the object deleted.
    pub stamp_id: Option<String>,
    /// The caller presented a client certificate the admission listener verified (always false
    /// unless `--admission-client-ca` is set).
    pub authenticated: bool,
    /// Its place in the hash chain of the replica that wrote it (set by the recorder; `None` on
    /// records written before the chain existed).
    pub link: Option<Link>,
}

/// A record's place in its replica's hash chain (see `audit::chain`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    /// The writing process (host name and a random suffix, new at every start).
    pub replica: String,
    /// 1, 2, 3… within the replica, gapless.
    pub seq: i64,
    /// Hex SHA-256 of the previous record of the replica (64 zeros before the first).
    pub prev_hash: String,
    /// Hex SHA-256 of this record's fields and `prev_hash`.
    pub hash: String,
}

/// A signed statement about a replica's chain: a checkpoint (the record at `seq` has `hash`),
/// the chain's start (`seq` 0), or a prune marker (records up to `seq` were deleted by
/// retention, the last of them had `hash`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainMark {
    pub replica: String,
    pub seq: i64,
    /// `start`, `checkpoint` or `prune`.
    pub kind: String,
    pub hash: String,
    pub at: String,
    /// Compact JWS by the stamp key over the other fields.
    pub signature: String,
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
    /// The object's name (or generateName).
    pub name: Option<String>,
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
