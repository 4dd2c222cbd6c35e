//! Who a request is from, in SCIM terms: strip the OIDC username prefix, find the user by the
//! configured attribute, and for the named delegate service accounts find the person they act
//! for. Never trusts `userInfo.groups`. No I/O: reads one directory snapshot.

use crate::directory::{Lookup, Snapshot, User};
use crate::policy::{MatchAttribute, Policy, Requester, Via};
use std::sync::Arc;

/// Argo Server's labels naming the person it acts for.
pub const ARGO_CREATOR: &str = "workflows.argoproj.io/creator";
pub const ARGO_CREATOR_EMAIL: &str = "workflows.argoproj.io/creator-email";
pub const ARGO_CREATOR_USERNAME: &str = "workflows.argoproj.io/creator-preferred-username";

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
        .map(|(g, _)| g.display_name.to_lowercase())
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

/// Resolve the requester of one admission request.
pub fn resolve(
    s: &Snapshot,
    policy: &Policy,
    username: &str,
    labels: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<Resolved> {
    if let Some(sa) = username.strip_prefix("system:serviceaccount:") {
        let (namespace, name) = sa
            .split_once(':')
            .ok_or_else(|| Error::BadServiceAccount(username.to_string()))?;
        return match policy.delegate(namespace, name).map(|d| d.via) {
            Some(Via::ArgoCreatorLabels) => {
                let label = |k: &str| {
                    labels
                        .and_then(|l| l.get(k))
                        .and_then(|v| v.as_str())
                        .filter(|v| !v.is_empty())
                };
                // Argo writes the email with '@' as '.at.'; the preferred username and the subject as-is.
                let found = if let Some(email) = label(ARGO_CREATOR_EMAIL) {
                    // IdPs often use the email as userName and may not send `emails`: try both.
                    let email = email.replacen(".at.", "@", 1);
                    find_person(s, MatchAttribute::Emails, &email)
                        .or_else(|e| find_person(s, MatchAttribute::UserName, &email).map_err(|_| e))
                } else if let Some(u) = label(ARGO_CREATOR_USERNAME).or_else(|| label(ARGO_CREATOR)) {
                    find_person(s, MatchAttribute::UserName, u)
                } else {
                    Err(Error::NoCreatorLabels(username.to_string()))
                };
                found.map(|requester| Resolved::Person {
                    requester,
                    via: Some(format!("{namespace}:{name}")),
                })
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
