//! Offboarding: what a person left behind when SCIM deactivates or deletes them. Admission
//! already refuses their next request; this finds the live objects their verified submit stamp
//! names (label `scimgate.io/submitted-by-id`, one LIST per kind, every namespace), decides per
//! object what the configuration asks for (`plan`), and says so: a decision record per object
//! (hook `offboarding`, action `offboard`, in the same chained log as admission's, so
//! `audit query --user` and `audit offboarding` read it) and a Kubernetes Event on the object
//! (reason `Offboarded`).
//!
//! `report` (the default) changes nothing in the cluster; `act` takes each step as a PATCH that
//! carries scimgate's offboarding stamp (`stamp::offboard`), which its own webhooks admit
//! (`admission::own_write`).
//!
//! Must not: act on an object whose stamp does not verify (a label is only a hint anyone who can
//! write the object could have set), or on a person the directory does not know as departed (an
//! id it has never seen is not a leaver: a fresh or restored directory must not sweep the
//! cluster).

pub mod access;
pub mod plan;
pub mod report;
pub mod sweep;

use crate::directory::Snapshot;
use crate::policy::Policy;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// `offboarding:` in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Options {
    pub mode: Mode,
    pub cron_workflows: CronWorkflows,
    pub pending_runs: PendingRuns,
    pub running_runs: RunningRuns,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            mode: Mode::Report,
            cron_workflows: CronWorkflows::Suspend,
            pending_runs: PendingRuns::Cancel,
            running_runs: RunningRuns::Keep,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No sweep.
    Off,
    /// Find, record and announce what would be done; change nothing.
    Report,
    /// Do it.
    Act,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Report => "report",
            Mode::Act => "act",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CronWorkflows {
    Suspend,
    Keep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PendingRuns {
    Cancel,
    Keep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunningRuns {
    Keep,
    Cancel,
}

/// Why a person counts as gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departure {
    pub user_name: String,
    /// `deactivated` or `deleted`.
    pub cause: &'static str,
    /// When it was deleted (RFC 3339); a deactivation's time is read only for the departures a
    /// replica sweeps ([`deactivated_at`]).
    pub at: Option<String>,
    /// Tells this departure from the person's earlier ones (deactivated, re-activated,
    /// deactivated again), the same on every replica: the user record's version, or `deleted`.
    pub key: String,
}

/// An agent's departure key: the same on every replica, and new when its owners come back and
/// go again (their record versions change).
fn unsponsored_key(snapshot: &Snapshot, version: i64, owners: &[Arc<str>]) -> String {
    let versions: Vec<String> = owners
        .iter()
        .map(|o| {
            snapshot
                .user(o)
                .map(|u| u.record.version)
                .or_else(|| snapshot.group(o).map(|g| g.record.version))
                .map_or_else(|| "gone".to_string(), |v| v.to_string())
        })
        .collect();
    format!("unsponsored@{version}:{}", versions.join(","))
}

const UNSPONSORED: &str = "left without an active owner";

/// Everyone the directory knows as departed, by SCIM id: users with `active: false`, deleted
/// users (their tombstones) whose userName no one has taken since, and agents — `/Agents`
/// resources and the users the policy marks as agents — deactivated, deleted, or whose owners
/// are all known to be gone (deactivated, deleted, groups without an active member): what an
/// agent started stops with the last person it acted for. An agent user without a manager, or
/// whose manager the directory never held, is refused by admission but not swept: that is how
/// the IdP maps it, not a departure.
pub fn departed(snapshot: &Snapshot, policy: &Policy) -> BTreeMap<String, Departure> {
    let mut out = BTreeMap::new();
    let agent = |name: &str, cause: &'static str, at: Option<String>, key: String| Departure {
        user_name: format!("agent {name}"),
        cause,
        at,
        key,
    };
    let is_agent = crate::identity::marked_agent(policy);
    for (id, a) in snapshot.agents() {
        if !a.active {
            let key = format!("deactivated@{}", a.record.version);
            out.insert(id.to_string(), agent(&a.name, "deactivated", None, key));
        } else if crate::identity::owners_gone(snapshot, &a.owners, &is_agent).is_some() {
            let key = unsponsored_key(snapshot, a.record.version, &a.owners);
            out.insert(id.to_string(), agent(&a.name, UNSPONSORED, None, key));
        }
    }
    for t in snapshot.agent_tombstones() {
        let d = agent(&t.unique_key, "deleted", Some(t.deleted_at.clone()), "deleted".into());
        out.entry(t.id.to_string()).or_insert(d);
    }
    let deleted: std::collections::HashSet<&str> = snapshot.tombstones().map(|t| &*t.id).collect();
    for (id, u) in snapshot.users().filter(|(_, u)| u.active) {
        let Some(owners) = crate::identity::agent_user_owners(policy, u) else {
            continue;
        };
        // Its manager, known to the directory and gone: deactivated or deleted.
        let gone = owners.iter().any(|m| match snapshot.user(m) {
            Some(m) => !m.active,
            None => deleted.contains(&**m),
        });
        if gone {
            let key = unsponsored_key(snapshot, u.record.version, &owners);
            out.insert(id.to_string(), agent(&u.user_name, UNSPONSORED, None, key));
        }
    }
    for (id, user) in snapshot.users() {
        if !user.active {
            out.insert(
                id.to_string(),
                Departure {
                    user_name: user.user_name.to_string(),
                    cause: "deactivated",
                    at: None,
                    key: format!("deactivated@{}", user.record.version),
                },
            );
        }
    }
    for t in snapshot.tombstones() {
        out.entry(t.id.to_string()).or_insert_with(|| Departure {
            user_name: t.unique_key.to_string(),
            cause: "deleted",
            at: Some(t.deleted_at.clone()),
            // A SCIM id is deleted once.
            key: "deleted".into(),
        });
    }
    out
}

/// When user `id` was last changed — for a deactivated user, when they were deactivated (or
/// changed since): the SCIM record's `meta.lastModified`. Parses the stored record, so it is read
/// for the departures being swept, not for every departed person each time the directory changes.
pub fn deactivated_at(snapshot: &Snapshot, id: &str) -> Option<String> {
    let user = snapshot.user(id)?;
    let body: serde_json::Value = serde_json::from_str(&user.record.body).ok()?;
    body["meta"]["lastModified"].as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResourceType;
    use crate::store::{Change, Record};
    use serde_json::json;

    fn put(rt: ResourceType, id: &str, version: i64, body: serde_json::Value) -> Change {
        let key = body["userName"]
            .as_str()
            .or(body["name"].as_str())
            .or(body["displayName"].as_str());
        Change::Put {
            record: Record {
                rt,
                id: id.into(),
                unique_key: crate::model::name::fold(key.unwrap_or(id)).into(),
                version,
                body: body.to_string().into(),
            },
            previous: None,
        }
    }

    #[test]
    fn agents_depart_with_their_last_owner_and_come_back_with_a_new_key() {
        let policy = Policy::parse(
            "apiVersion: scimgate.io/v1\nkind: Policy\nidentity:\n  agents:\n    users:\n      attribute: userType\n      equals: [Agent]\nrules:\n  - name: a\n    allow: [submit]\n    groups: [g]\n",
            "p",
        )
        .expect("policy");
        let mut s = Snapshot::default();
        s.apply(&[
            put(
                ResourceType::User,
                "u1",
                1,
                json!({"userName": "alice", "active": true}),
            ),
            put(
                ResourceType::Agent,
                "a1",
                1,
                json!({"name": "pr-bot", "owners": [{"value": "u1"}]}),
            ),
            put(
                ResourceType::Agent,
                "a2",
                1,
                json!({"name": "off-bot", "active": false, "owners": [{"value": "u1"}]}),
            ),
            put(
                ResourceType::User,
                "u2",
                1,
                json!({"userName": "deploy-agent", "userType": "agent",
                       crate::model::resource::ENTERPRISE_USER: {"manager": {"value": "u1"}}}),
            ),
        ]);
        let gone = departed(&s, &policy);
        assert_eq!(gone.keys().collect::<Vec<_>>(), vec!["a2"]);
        assert_eq!(
            (gone["a2"].user_name.as_str(), gone["a2"].cause),
            ("agent off-bot", "deactivated")
        );
        // Alice leaves: her agent and her agent user depart with her.
        s.apply(&[put(
            ResourceType::User,
            "u1",
            2,
            json!({"userName": "alice", "active": false}),
        )]);
        let gone = departed(&s, &policy);
        assert_eq!(gone.keys().collect::<Vec<_>>(), vec!["a1", "a2", "u1", "u2"]);
        assert_eq!(gone["a1"].cause, "left without an active owner");
        assert_eq!(gone["u2"].user_name, "agent deploy-agent");
        let first = gone["a1"].key.clone();
        // Back and gone again: a departure of its own.
        s.apply(&[put(
            ResourceType::User,
            "u1",
            3,
            json!({"userName": "alice", "active": true}),
        )]);
        assert!(!departed(&s, &policy).contains_key("a1"));
        s.apply(&[put(
            ResourceType::User,
            "u1",
            4,
            json!({"userName": "alice", "active": false}),
        )]);
        let again = departed(&s, &policy);
        assert_ne!(again["a1"].key, first);
        // A deleted agent is swept too; an agent user whose manager the directory never held,
        // or who has none, is not (admission refuses it, but nobody departed).
        let a1 = s.record(ResourceType::Agent, "a1").cloned().expect("a1");
        s.apply(&[
            Change::Delete { record: a1 },
            put(
                ResourceType::User,
                "u3",
                1,
                json!({"userName": "orphan-agent", "userType": "Agent"}),
            ),
            put(
                ResourceType::User,
                "u4",
                1,
                json!({"userName": "stranger-agent", "userType": "Agent",
                       crate::model::resource::ENTERPRISE_USER: {"manager": {"value": "nobody-we-know"}}}),
            ),
        ]);
        let gone = departed(&s, &policy);
        assert_eq!((gone["a1"].cause, gone["a1"].key.as_str()), ("deleted", "deleted"));
        assert!(!gone.contains_key("u3") && !gone.contains_key("u4"), "{gone:?}");
    }
}
