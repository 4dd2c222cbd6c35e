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
    /// On an update, the decision whose stamp for this action the object carried before the
    /// write (its `scimgate.io/<event>-decision` annotation). The API server may run admission
    /// twice for one write (`GuaranteedUpdate` retrying on a stale cache): both attempts start
    /// from the same prior, while a second write starts from the first one's decision.
    pub prior_decision: Option<String>,
    /// On an agent's request, the SCIM id of the person (an active owner) whose rights carried
    /// the decision: the stamp's `scimgate.io/on-behalf-of`. `None` for people and service
    /// accounts acting for themselves, and on records written before agents existed.
    pub on_behalf_of: Option<String>,
    /// Its place in the hash chain of the replica that wrote it (set by the recorder; `None` on
    /// records written before the chain existed).
    pub link: Option<Link>,
}

/// Stored fields are cut to these many bytes (names and ids: well past what Kubernetes and SCIM
/// allow — 253 for an object name, 63 for a namespace, UUIDs for ids; lists and messages: room for
/// dozens of entries). Whatever a request puts in them, a record stays a few KiB.
const ID_MAX: usize = 256;
const NAME_MAX: usize = 512;
const REQUESTER_MAX: usize = 1024;
const LIST_MAX: usize = 4096;

impl DecisionRecord {
    /// Every field that a request can fill, cut to its bound with a visible marker ([`bound`]).
    /// The one place records are bounded: the recorder calls it before the record is chained
    /// and stored, so the hash covers what is stored.
    pub fn bounded(mut self) -> DecisionRecord {
        for (field, max) in [
            (&mut self.id, ID_MAX),
            (&mut self.at, ID_MAX),
            (&mut self.request_uid, ID_MAX),
            (&mut self.hook, ID_MAX),
            (&mut self.kind, ID_MAX),
            (&mut self.namespace, ID_MAX),
            (&mut self.name, NAME_MAX),
            (&mut self.action, ID_MAX),
            (&mut self.requester, REQUESTER_MAX),
            (&mut self.groups, LIST_MAX),
            (&mut self.outcome, ID_MAX),
            (&mut self.mode, ID_MAX),
            (&mut self.reason, LIST_MAX),
            (&mut self.policy, ID_MAX),
            (&mut self.run_as, LIST_MAX),
            (&mut self.templates, LIST_MAX),
        ] {
            bound(field, max);
        }
        for (field, max) in [
            (&mut self.user_id, ID_MAX),
            (&mut self.rule, ID_MAX),
            (&mut self.submitter_id, ID_MAX),
            (&mut self.prior_decision, ID_MAX),
            (&mut self.stamp_id, ID_MAX),
            (&mut self.on_behalf_of, ID_MAX),
        ] {
            if let Some(f) = field {
                bound(f, max);
            }
        }
        self
    }
}

/// Cut `s` to at most `max` bytes (on a character boundary) and append
/// `…[truncated, N bytes]`, N being its whole length, so a reader sees it was cut and by how much.
pub fn bound(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let whole = s.len();
    let end = prefix(s, max).len();
    s.truncate(end);
    s.push_str(&format!("…[truncated, {whole} bytes]"));
}

/// The longest start of `s` of at most `max` bytes that ends on a character boundary.
pub fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
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
    /// A person's SCIM id: also the records an agent made on their behalf. The `user_id` and
    /// `requester` filters then read "(… or `on_behalf_of` is this person)"; alone, it selects
    /// only those records. `audit query --user` sets it for people.
    pub or_on_behalf_of: Option<String>,
}

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 10_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_field_is_bounded_with_a_marker() {
        let huge = "é".repeat(3 * 1024 * 1024);
        let r = DecisionRecord {
            name: huge.clone(),
            reason: huge.clone(),
            groups: huge.clone(),
            requester: huge.clone(),
            run_as: huge.clone(),
            templates: huge.clone(),
            request_uid: huge.clone(),
            kind: huge.clone(),
            namespace: huge.clone(),
            user_id: Some(huge.clone()),
            on_behalf_of: Some(huge.clone()),
            rule: Some("team-submit".into()),
            ..Default::default()
        }
        .bounded();
        for f in [
            &r.name,
            &r.reason,
            &r.groups,
            &r.requester,
            &r.run_as,
            &r.templates,
            &r.request_uid,
        ] {
            assert!(f.len() < LIST_MAX + 64, "{}", f.len());
            assert!(f.ends_with("…[truncated, 6291456 bytes]"), "{}", &f[f.len() - 40..]);
        }
        assert!(r.user_id.as_deref().is_some_and(|u| u.len() < ID_MAX + 64));
        assert_eq!(r.rule.as_deref(), Some("team-submit"));
        let obo = r.on_behalf_of.as_deref().unwrap_or_default();
        assert!(obo.len() < ID_MAX + 64, "{}", obo.len());
        assert!(obo.ends_with("…[truncated, 6291456 bytes]"), "{obo}");
        let kept = DecisionRecord {
            on_behalf_of: Some("2819c223-7f76-453a-919d-413861904646".into()),
            ..Default::default()
        }
        .bounded();
        assert_eq!(
            kept.on_behalf_of.as_deref(),
            Some("2819c223-7f76-453a-919d-413861904646"),
            "an id within the bound is kept as it is"
        );
        assert_eq!(DecisionRecord::default().bounded().on_behalf_of, None);
        let mut short = "kate".to_string();
        bound(&mut short, 4);
        assert_eq!(short, "kate");
    }
}
