//! The identity checks of one live object, as report results: its stamp (valid, missing,
//! forged), whether the person who submitted it is still active in the directory, and — where
//! the policy asks for a distinct approver for its kind and namespace — whether someone else
//! approved it. Pure: reads the object, the directory snapshot and the policy.

use crate::audit::verify::{self, Status};
use crate::directory::Snapshot;
use crate::policy::{Kind, Policy};
use crate::stamp::{object, Entry, Verifier};
use serde_json::Value;

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Ordered as reports keep them when they must cut: failures first.
    Fail,
    Warn,
    Skip,
    Pass,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Fail => "fail",
            Outcome::Warn => "warn",
            Outcome::Skip => "skip",
            Outcome::Pass => "pass",
        }
    }
}

/// The checks, by the rule name a report gives them.
pub const STAMP: &str = "stamp";
pub const SUBMITTER_ACTIVE: &str = "submitter-active";
pub const APPROVER_DISTINCT: &str = "approver-distinct";

/// One check of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: &'static str,
    pub outcome: Outcome,
    pub message: String,
}

fn found(check: &'static str, outcome: Outcome, message: String) -> Finding {
    Finding {
        check,
        outcome,
        message,
    }
}

/// Every check that applies to `obj`, a `kind` in `namespace`.
pub fn of(v: &Verifier, snap: &Snapshot, policy: &Policy, kind: Kind, namespace: &str, obj: &Value) -> Vec<Finding> {
    let mut out = vec![stamp(v, obj)];
    let submit = object::verified(v, obj, Entry::SUBMIT).and_then(Result::ok);
    out.push(match &submit {
        None => found(
            SUBMITTER_ACTIVE,
            Outcome::Skip,
            "no valid submit stamp names a person".into(),
        ),
        Some(c) if c.sub.is_empty() => found(
            SUBMITTER_ACTIVE,
            Outcome::Skip,
            format!("submitted by the service account {}", c.name),
        ),
        Some(c) => submitter(snap, policy, &c.sub, &c.name),
    });
    if policy.asks_distinct_approver(kind, namespace) {
        let approval = Entry::of(crate::policy::Action::Approve)
            .and_then(|e| object::verified(v, obj, e))
            .and_then(Result::ok);
        out.push(match (&submit, approval) {
            (_, None) => found(APPROVER_DISTINCT, Outcome::Skip, "not approved (yet)".into()),
            (Some(s), Some(a)) if !s.sub.is_empty() && s.sub == a.sub => found(
                APPROVER_DISTINCT,
                Outcome::Fail,
                format!(
                    "approved by {}, who submitted it; the policy asks for another person",
                    a.name
                ),
            ),
            (_, Some(a)) => found(
                APPROVER_DISTINCT,
                Outcome::Pass,
                format!("approved by {}, not its submitter", a.name),
            ),
        });
    }
    out
}

/// The stamp check, as `audit verify` reads the stamps.
fn stamp(v: &Verifier, obj: &Value) -> Finding {
    let stamps = verify::verify_object(v, obj).stamps;
    if let Some(why) = stamps.iter().find_map(|s| match s {
        Status::Forged(why) => Some(why),
        _ => None,
    }) {
        return found(STAMP, Outcome::Fail, format!("forged: {why}"));
    }
    match stamps.first() {
        Some(Status::Valid { action, by, .. }) => found(STAMP, Outcome::Pass, format!("{action} stamp by {by}, valid")),
        Some(Status::Inherited { action, owner }) => found(
            STAMP,
            Outcome::Warn,
            format!("no stamp of its own: it carries its owner {owner}'s {action} stamp"),
        ),
        _ => found(
            STAMP,
            Outcome::Fail,
            "missing: scimgate never admitted it (created while scimgate was unreachable or before it was installed), or its stamp was removed".into(),
        ),
    }
}

/// Whether the person or agent with SCIM id `id` (stamped as `name`) is still active — an
/// agent with an active owner to act for.
fn submitter(snap: &Snapshot, policy: &Policy, id: &str, name: &str) -> Finding {
    let is_agent = crate::identity::marked_agent(policy);
    if let Some(a) = snap.agent(id) {
        let why = (!a.active)
            .then(|| "it is deactivated".to_string())
            .or_else(|| crate::identity::owners_gone(snap, &a.owners, &is_agent));
        return match why {
            None => found(SUBMITTER_ACTIVE, Outcome::Pass, format!("agent {name} is active")),
            Some(why) => found(
                SUBMITTER_ACTIVE,
                Outcome::Fail,
                format!("agent {name} may no longer act: {why}"),
            ),
        };
    }
    match snap.user(id) {
        Some(u) if u.active && is_agent(u) => {
            let owners = crate::identity::agent_user_owners(policy, u).unwrap_or_default();
            match crate::identity::owners_gone(snap, &owners, &is_agent) {
                None => found(SUBMITTER_ACTIVE, Outcome::Pass, format!("agent {name} is active")),
                Some(why) => found(
                    SUBMITTER_ACTIVE,
                    Outcome::Fail,
                    format!("agent {name} may no longer act: {why}"),
                ),
            }
        }
        Some(u) if u.active => found(SUBMITTER_ACTIVE, Outcome::Pass, format!("{name} is active")),
        Some(_) => found(
            SUBMITTER_ACTIVE,
            Outcome::Fail,
            format!("{name} was deactivated through SCIM"),
        ),
        None if snap.tombstones().any(|t| &*t.id == id) => found(
            SUBMITTER_ACTIVE,
            Outcome::Fail,
            format!("{name} was deleted through SCIM"),
        ),
        None => found(
            SUBMITTER_ACTIVE,
            Outcome::Fail,
            format!("{name} ({id}) is not in the directory"),
        ),
    }
}
