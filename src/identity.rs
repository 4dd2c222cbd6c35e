//! Who a request is from, in SCIM terms: strip the OIDC username prefix, find the user by the
//! configured attribute, and for the named delegate service accounts find the person they act
//! for. Never trusts `userInfo.groups`. No I/O: reads one directory snapshot.

use crate::directory::{ArgoClaim, Lookup, Snapshot, User};
use crate::policy::{Claim, Kind, MatchAttribute, Policy, Requester, Via};
use std::sync::Arc;

/// The Argo Server's labels naming the person it acts for (argo-workflows `workflow/common/common.go`):
/// who created the object…
pub const ARGO_CREATOR: &str = "workflows.argoproj.io/creator";
pub const ARGO_CREATOR_EMAIL: &str = "workflows.argoproj.io/creator-email";
pub const ARGO_CREATOR_USERNAME: &str = "workflows.argoproj.io/creator-preferred-username";
/// …who acted on it last, and how (`workflow/creator/creator.go` `LabelActor`).
pub const ARGO_ACTOR: &str = "workflows.argoproj.io/actor";
pub const ARGO_ACTOR_EMAIL: &str = "workflows.argoproj.io/actor-email";
pub const ARGO_ACTOR_USERNAME: &str = "workflows.argoproj.io/actor-preferred-username";
pub const ARGO_ACTION: &str = "workflows.argoproj.io/action";
/// The identity labels, creator's then actor's: subject, email, preferred username.
pub const ARGO_CREATOR_LABELS: [&str; 3] = [ARGO_CREATOR, ARGO_CREATOR_EMAIL, ARGO_CREATOR_USERNAME];
pub const ARGO_ACTOR_LABELS: [&str; 3] = [ARGO_ACTOR, ARGO_ACTOR_EMAIL, ARGO_ACTOR_USERNAME];
/// Every label the Argo Server writes to say who created or acted on a run, and how.
pub const ARGO_IDENTITY_LABELS: [&str; 7] = [
    ARGO_CREATOR,
    ARGO_CREATOR_EMAIL,
    ARGO_CREATOR_USERNAME,
    ARGO_ACTOR,
    ARGO_ACTOR_EMAIL,
    ARGO_ACTOR_USERNAME,
    ARGO_ACTION,
];

/// Why a request has no person behind it that may act. The messages end up in denials: they
/// say who, and what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0} is deactivated in the identity provider")]
    Deactivated(String),
    #[error("{who} was deleted from the identity provider at {at}")]
    Deleted { who: String, at: String },
    #[error("{0} is not a user provisioned from the identity provider")]
    Unknown(String),
    #[error("{who} matches {n} users in the identity provider; it must name one")]
    Ambiguous { who: String, n: usize },
    #[error("'{0}' is not a well-formed service account name")]
    BadServiceAccount(String),
    #[error("{0} acts for people, but the object has no {ARGO_CREATOR}* labels naming one")]
    NoCreatorLabels(String),
    #[error("{0} changed it without naming who acted (no {ARGO_ACTOR}* labels set by this request); an Argo Server in auth-mode=server writes no identity, so scimgate cannot attribute its actions")]
    NoActor(String),
    #[error("the label {label}={value} names no user provisioned from the identity provider")]
    NoLabelledUser { label: String, value: String },
    #[error("the label {label}={value} fits {first} and {second} as Argo rewrites names; it must name one person")]
    Colliding {
        label: String,
        value: String,
        first: String,
        second: String,
    },
    #[error("the labels {first} and {second} name different people")]
    Disagreeing { first: String, second: String },
    #[error("{sa} acts for people, and the {claim} claim names them, but this request sets no {label} label (the Argo Server writes it only when the person's sign-in carries that claim)")]
    NoAuthoritative {
        sa: String,
        claim: &'static str,
        label: &'static str,
    },
    #[error(
        "{username} did not sign in through the identity provider (no '{prefix}' prefix), so it has no SCIM identity"
    )]
    NoPrefix { username: String, prefix: String },
    #[error("the request carries no username")]
    NoUsername,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the requester was established.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// A person, directly or through a delegate (`via` names the delegate service account).
    Person { requester: Requester, via: Option<String> },
    /// A service account acting for itself.
    ServiceAccount(Requester),
    /// A service account configured as `ownerStamp` delegate: the person comes from the
    /// object's stamp, which the caller verifies.
    OwnerStamp { namespace: String, name: String },
}

fn person(s: &Snapshot, u: &User) -> Requester {
    let groups = s
        .groups_of(&u.record.id)
        .into_iter()
        .map(|(g, _)| crate::model::name::fold(&g.display_name))
        .collect();
    Requester::Person {
        id: u.record.id.to_string(),
        user_name: u.user_name.to_string(),
        groups,
    }
}

fn active(s: &Snapshot, u: &Arc<User>, said: &str) -> Result<Requester> {
    if u.active {
        Ok(person(s, u))
    } else {
        Err(Error::Deactivated(said.to_string()))
    }
}

/// Find a person by the policy's match attribute.
pub fn find_person(s: &Snapshot, attr: MatchAttribute, value: &str) -> Result<Requester> {
    match attr {
        MatchAttribute::UserName => match s.lookup_user_name(value) {
            Lookup::Active(u) | Lookup::Inactive(u) => active(s, &Arc::new(u.clone()), value),
            Lookup::Deleted(t) => Err(Error::Deleted {
                who: value.to_string(),
                at: t.deleted_at.to_string(),
            }),
            Lookup::Unknown => Err(Error::Unknown(value.to_string())),
        },
        MatchAttribute::Emails | MatchAttribute::ExternalId | MatchAttribute::Id => {
            let ids = match attr {
                MatchAttribute::Emails => s.users_by_email(value),
                MatchAttribute::ExternalId => s.by_external_id(crate::model::ResourceType::User, value),
                _ => vec![Arc::from(value)],
            };
            let users: Vec<&Arc<User>> = ids.iter().filter_map(|id| s.user(id)).collect();
            match users.as_slice() {
                [u] => active(s, u, value),
                [] => Err(Error::Unknown(value.to_string())),
                _ => Err(Error::Ambiguous {
                    who: value.to_string(),
                    n: users.len(),
                }),
            }
        }
    }
}

/// The person a verified stamp names (`sub`, a SCIM id), with whether the identity provider still
/// has them active: the submitter of an owner whose runs a controller creates (what becomes of a
/// run of someone deactivated since is the policy's `whenOwnerOffboarded`).
pub fn stamped_person(s: &Snapshot, id: &str) -> Result<(Requester, bool)> {
    match s.user(id) {
        Some(u) => Ok((person(s, u), u.active)),
        None => Err(Error::Unknown(format!("SCIM id {id}"))),
    }
}

type Labels = serde_json::Map<String, serde_json::Value>;

fn label<'a>(labels: Option<&'a Labels>, k: &str) -> Option<&'a str> {
    labels
        .and_then(|l| l.get(k))
        .and_then(|v| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The claim an Argo identity label carries.
fn claim_of(key: &str) -> ArgoClaim {
    if key.ends_with("-email") {
        ArgoClaim::Email
    } else if key.ends_with("-preferred-username") {
        ArgoClaim::PreferredUsername
    } else {
        ArgoClaim::Subject
    }
}

/// The label of `claim` among Argo's creator (`actor: false`) or actor labels.
fn authoritative_label(claim: Claim, actor: bool) -> &'static str {
    match (claim, actor) {
        (Claim::Email, false) => ARGO_CREATOR_EMAIL,
        (Claim::Email, true) => ARGO_ACTOR_EMAIL,
        (Claim::Subject, false) => ARGO_CREATOR,
        (Claim::Subject, true) => ARGO_ACTOR,
    }
}

/// The one person Argo's labels name: the `authoritative` label must be among `keys` and fit
/// exactly one person, matched the way Argo writes that claim; every other label of `keys` that
/// fits anyone must fit that person too (one that fits nobody is passed over: an IdP's subject is
/// often an id SCIM never saw, and a `preferred_username` may be anything). A label a user can
/// set alone never names anyone by itself.
fn labelled_person(
    s: &Snapshot,
    sa: &str,
    claim: Claim,
    labels: Option<&Labels>,
    keys: &[&'static str],
    authoritative: &'static str,
) -> Result<Requester> {
    let value = keys
        .contains(&authoritative)
        .then(|| label(labels, authoritative))
        .flatten()
        .ok_or_else(|| Error::NoAuthoritative {
            sa: sa.to_string(),
            claim: claim.as_str(),
            label: authoritative,
        })?;
    let ids = s.users_by_argo_label(claim_of(authoritative), value);
    let users: Vec<&Arc<User>> = ids.iter().filter_map(|id| s.user(id)).collect();
    let person = match users.as_slice() {
        [u] => *u,
        [] => {
            return Err(Error::NoLabelledUser {
                label: authoritative.to_string(),
                value: value.to_string(),
            })
        }
        [a, b, ..] => {
            return Err(Error::Colliding {
                label: authoritative.to_string(),
                value: value.to_string(),
                first: a.user_name.to_string(),
                second: b.user_name.to_string(),
            })
        }
    };
    for k in keys.iter().filter(|k| **k != authoritative) {
        let Some(v) = label(labels, k) else { continue };
        let others = s.users_by_argo_label(claim_of(k), v);
        if !others.is_empty() && !others.contains(&person.record.id) {
            return Err(Error::Disagreeing {
                first: format!("{authoritative}={value}"),
                second: format!("{k}={v}"),
            });
        }
    }
    active(s, person, &person.user_name)
}

/// The person the Argo Server acts for, named by the delegate's authoritative claim. On CREATE,
/// its `creator*` labels. On UPDATE, its `actor*` labels — those this request set (they differ
/// from the stored object's: Stop and Terminate are merge patches, so a label the acting
/// person's claims lack keeps the previous actor's value and is not theirs), which must include
/// the authoritative one. When the request sets none, the same person acted again (every Argo
/// Server write of a Workflow or template labels the actor, with the values already there):
/// the stored labels name them. A CronWorkflow's suspend and resume write no label at all
/// ([`ArgoTrace::None`]): nobody is named (`Ok(None)`), and the Argo Server answers for it.
fn argo_server_person(
    s: &Snapshot,
    sa: &str,
    claim: Claim,
    (kind, trace): (Option<Kind>, ArgoTrace),
    labels: Option<&Labels>,
    old: Option<Option<&Labels>>,
) -> Result<Option<Requester>> {
    let Some(old) = old else {
        return labelled_person(
            s,
            sa,
            claim,
            labels,
            &ARGO_CREATOR_LABELS,
            authoritative_label(claim, false),
        )
        .map(Some)
        .map_err(|e| match e {
            Error::NoAuthoritative { .. } if ARGO_CREATOR_LABELS.iter().all(|k| label(labels, k).is_none()) => {
                Error::NoCreatorLabels(sa.to_string())
            }
            e => e,
        });
    };
    let changed: Vec<&'static str> = ARGO_ACTOR_LABELS
        .into_iter()
        .filter(|k| label(labels, k).is_some() && label(labels, k) != label(old, k))
        .collect();
    let keys: &[&'static str] = match (changed.is_empty(), trace) {
        (false, _) => &changed,
        // A change Argo writes no actor for (a CronWorkflow's suspend or resume): nobody.
        (true, ArgoTrace::None) => return Ok(None),
        (true, ArgoTrace::Actor) if kind.is_none() => return Err(Error::NoActor(sa.to_string())),
        (true, ArgoTrace::Actor) => &ARGO_ACTOR_LABELS,
    };
    if ARGO_ACTOR_LABELS.iter().all(|k| label(labels, k).is_none()) {
        return Err(Error::NoActor(sa.to_string()));
    }
    labelled_person(s, sa, claim, labels, keys, authoritative_label(claim, true)).map(Some)
}

/// Whether the Argo Server writes the acting person into its labels for a change: it does for
/// every write of a Workflow and for template and CronWorkflow edits (`creator.LabelActor`), not
/// for a CronWorkflow's suspend and resume (`server/cronworkflow/cron_workflow_server.go`
/// `setCronWorkflowSuspend`: a merge patch of `spec.suspend` alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgoTrace {
    Actor,
    None,
}

/// Whether an Argo identity label's value names someone other than the person `id` (a value that
/// fits nobody names no one: an IdP subject SCIM never saw).
pub fn names_someone_else(s: &Snapshot, key: &str, value: &str, id: &str) -> bool {
    let ids = s.users_by_argo_label(claim_of(key), value);
    !ids.is_empty() && !ids.iter().any(|x| **x == *id)
}

/// Resolve the requester of one admission request about an object of `kind` (`None`: not one of
/// ours). `old_labels` is `Some` on UPDATE (the stored object's labels).
pub fn resolve(
    s: &Snapshot,
    policy: &Policy,
    username: &str,
    kind: (Option<Kind>, ArgoTrace),
    labels: Option<&Labels>,
    old_labels: Option<Option<&Labels>>,
) -> Result<Resolved> {
    if let Some(sa) = username.strip_prefix("system:serviceaccount:") {
        let (namespace, name) = sa
            .split_once(':')
            .ok_or_else(|| Error::BadServiceAccount(username.to_string()))?;
        let delegate = policy.delegate(namespace, name);
        return match delegate.map(|d| d.via) {
            Some(Via::ArgoServer | Via::ArgoCreatorLabels) => {
                let claim = delegate.map(|d| d.claim).unwrap_or_default();
                Ok(
                    match argo_server_person(s, username, claim, kind, labels, old_labels)? {
                        Some(requester) => Resolved::Person {
                            requester,
                            via: Some(format!("{namespace}:{name}")),
                        },
                        None => Resolved::ServiceAccount(Requester::ServiceAccount {
                            namespace: namespace.into(),
                            name: name.into(),
                        }),
                    },
                )
            }
            Some(Via::OwnerStamp) => Ok(Resolved::OwnerStamp {
                namespace: namespace.into(),
                name: name.into(),
            }),
            None => Ok(Resolved::ServiceAccount(Requester::ServiceAccount {
                namespace: namespace.into(),
                name: name.into(),
            })),
        };
    }
    let name = match &policy.identity.username_prefix {
        Some(prefix) => username.strip_prefix(prefix.as_str()).ok_or_else(|| Error::NoPrefix {
            username: username.to_string(),
            prefix: prefix.clone(),
        })?,
        None => username,
    };
    if name.is_empty() {
        return Err(Error::NoUsername);
    }
    find_person(s, policy.identity.match_attribute, name).map(|requester| Resolved::Person { requester, via: None })
}
