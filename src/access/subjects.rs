//! Who a grant reaches, and how the API server names them. A group's members are its SCIM
//! members, nested groups included (cycles tolerated); only active users count. A person's
//! Kubernetes username is the inverse of what admission does with one (`crate::identity`):
//! the policy's `identity.usernamePrefix`, then the attribute `identity.matchAttribute` names —
//! the userName; each email (the values as SCIM holds them); the externalId; or the SCIM id.
//! A value the directory holds for more than one user names nobody: admission refuses it as
//! ambiguous, so it is bound for nobody either. Nor is a name the API server keeps for its own
//! identities (`system:` — service accounts, nodes, `system:anonymous`; without a username prefix
//! a SCIM userName could be one), or an empty one. Pure: reads one directory snapshot.

use crate::directory::{Snapshot, User};
use crate::model::ResourceType;
use crate::policy::{MatchAttribute, Policy};
use std::collections::HashSet;
use std::sync::Arc;

/// The active users in group `name` (a displayName, matched as the directory folds it), directly
/// or through nested groups, by id; `None` when the directory has no such group.
pub fn active_members(s: &Snapshot, name: &str) -> Option<Vec<Arc<User>>> {
    let root = s.by_unique_key(ResourceType::Group, &crate::model::name::fold(name))?;
    let mut seen: HashSet<&str> = HashSet::new();
    let mut frontier = vec![root.clone()];
    let mut users = Vec::new();
    while let Some(gid) = frontier.pop() {
        let Some(g) = s.group(&gid) else { continue };
        if !seen.insert(g.record.id.as_ref()) {
            continue;
        }
        for m in &g.members {
            match s.user(m) {
                Some(u) if u.active => users.push(u.clone()),
                Some(_) => {}
                None => frontier.push(m.clone()),
            }
        }
    }
    users.sort_by(|a, b| a.record.id.cmp(&b.record.id));
    users.dedup_by(|a, b| a.record.id == b.record.id);
    Some(users)
}

/// The usernames the API server gives `u`, as RBAC subjects name them.
pub fn usernames(s: &Snapshot, policy: &Policy, u: &User) -> Vec<String> {
    let prefix = policy.identity.username_prefix.as_deref().unwrap_or_default();
    let values: Vec<String> = match policy.identity.match_attribute {
        MatchAttribute::UserName => vec![u.user_name.to_string()],
        MatchAttribute::Id => vec![u.record.id.to_string()],
        MatchAttribute::ExternalId => u
            .external_id
            .iter()
            .filter(|x| s.by_external_id(ResourceType::User, x).len() == 1)
            .map(|x| x.to_string())
            .collect(),
        MatchAttribute::Emails => emails(u)
            .into_iter()
            .filter(|e| s.users_by_email(e).len() == 1)
            .collect(),
    };
    let mut names: Vec<String> = values
        .into_iter()
        .map(|v| format!("{prefix}{v}"))
        .filter(|n| bindable(n))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Whether a username may be a subject: not empty, and not in the `system:` namespace of names
/// the API server gives its own identities (kubernetes `pkg/apis/rbac/validation` reserves
/// nothing, so scimgate must: a user named `system:serviceaccount:ns:sa` would bind that account,
/// and `system:anonymous` every unauthenticated request).
pub fn bindable(name: &str) -> bool {
    !name.trim().is_empty() && !name.starts_with("system:")
}

/// The email values of a user as SCIM holds them (the directory's index keeps them folded; an
/// OIDC token carries them as the IdP spells them, which is what SCIM received too).
fn emails(u: &User) -> Vec<String> {
    let Ok(body) = serde_json::from_str::<serde_json::Value>(&u.record.body) else {
        return Vec::new();
    };
    body["emails"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["value"].as_str())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

/// A person a subject's username names, active or not: for saying whose access changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The SCIM id (a deleted user's, from their tombstone).
    pub id: String,
    pub user_name: String,
    pub state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    Deactivated,
    Deleted,
}

/// Who `username` (a RBAC `User` subject) is in the directory, as admission would find them.
pub fn person_named(s: &Snapshot, policy: &Policy, username: &str) -> Option<Person> {
    let prefix = policy.identity.username_prefix.as_deref().unwrap_or_default();
    let value = username.strip_prefix(prefix)?;
    let of = |u: &User| Person {
        id: u.record.id.to_string(),
        user_name: u.user_name.to_string(),
        state: if u.active { State::Active } else { State::Deactivated },
    };
    let one = |ids: Vec<Arc<str>>| match ids.as_slice() {
        [id] => s.user(id).map(|u| of(u)),
        _ => None,
    };
    match policy.identity.match_attribute {
        MatchAttribute::UserName => match s.lookup_user_name(value) {
            crate::directory::Lookup::Active(u) | crate::directory::Lookup::Inactive(u) => Some(of(u)),
            crate::directory::Lookup::Deleted(t) => Some(Person {
                id: t.id.to_string(),
                user_name: t.unique_key.to_string(),
                state: State::Deleted,
            }),
            crate::directory::Lookup::Unknown => None,
        },
        MatchAttribute::Emails => one(s.users_by_email(value)),
        MatchAttribute::ExternalId => one(s.by_external_id(ResourceType::User, value)),
        // A deleted user's tombstone is kept by userName, not id: found only by a scan, which a
        // bulk deletion would make quadratic. The record names the subject instead.
        MatchAttribute::Id => s.user(value).map(|u| of(u)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_api_servers_own_names_and_empty_ones_are_never_subjects() {
        for name in [
            "system:anonymous",
            "system:serviceaccount:kube-system:default",
            "system:masters",
            "",
            " ",
        ] {
            assert!(!super::bindable(name), "{name:?}");
        }
        for name in ["alice@example.com", "oidc:system:anonymous", "oidc:alice"] {
            assert!(super::bindable(name), "{name:?}");
        }
    }
}
