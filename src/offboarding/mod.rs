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
use std::collections::{BTreeMap, HashMap};
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

/// The Users the policy marks as agents (`identity.agents.users`) and their owners, remembered
/// by record version: a directory change costs a read of the users it changed, not of everyone.
#[derive(Debug, Default)]
pub struct AgentUsers {
    policy: String,
    /// User id → (record version read, its owners if it is an agent).
    known: HashMap<Arc<str>, (i64, Marked)>,
}

/// A user's owners when the policy marks it an agent.
type Marked = Option<Vec<Arc<str>>>;

impl AgentUsers {
    /// Bring the marks up to `snapshot` under `policy`; the agent users, with their owners.
    pub fn refresh(&mut self, snapshot: &Snapshot, policy: &Policy) -> Vec<(Arc<str>, Vec<Arc<str>>)> {
        if policy.identity.agents.users.is_none() {
            self.known.clear();
            return Vec::new();
        }
        if self.policy != policy.digest {
            self.policy = policy.digest.clone();
            self.known.clear();
        }
        self.known
            .retain(|id, (v, _)| snapshot.user(id).is_some_and(|u| u.record.version == *v));
        let mut out = Vec::new();
        for (id, user) in snapshot.users() {
            let (_, owners) = self
                .known
                .entry(id.clone())
                .or_insert_with(|| (user.record.version, crate::identity::agent_user_owners(policy, user)));
            if let Some(owners) = owners {
                out.push((id.clone(), owners.clone()));
            }
        }
        out
    }
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
/// resources and the `agent_users` the policy marks — deactivated or left without an active
/// owner (their owners' departures are theirs: what an agent started stops with the last person
/// it acted for).
pub fn departed(snapshot: &Snapshot, agent_users: &[(Arc<str>, Vec<Arc<str>>)]) -> BTreeMap<String, Departure> {
    let mut out = BTreeMap::new();
    let agent = |name: &str, cause: &'static str, key: String| Departure {
        user_name: format!("agent {name}"),
        cause,
        at: None,
        key,
    };
    let marked: std::collections::HashSet<&str> = agent_users.iter().map(|(id, _)| &**id).collect();
    let is_agent = |u: &crate::directory::User| marked.contains(&*u.record.id);
    for (id, a) in snapshot.agents() {
        if !a.active {
            let key = format!("deactivated@{}", a.record.version);
            out.insert(id.to_string(), agent(&a.name, "deactivated", key));
        } else if crate::identity::owners_gone(snapshot, &a.owners, &is_agent).is_some() {
            let key = unsponsored_key(snapshot, a.record.version, &a.owners);
            out.insert(id.to_string(), agent(&a.name, UNSPONSORED, key));
        }
    }
    for (id, owners) in agent_users {
        let Some(u) = snapshot.user(id).filter(|u| u.active) else {
            continue;
        };
        if crate::identity::owners_gone(snapshot, owners, &is_agent).is_some() {
            let key = unsponsored_key(snapshot, u.record.version, owners);
            out.insert(id.to_string(), agent(&u.user_name, UNSPONSORED, key));
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
                       crate::scim::schema::ENTERPRISE_USER: {"manager": {"value": "u1"}}}),
            ),
        ]);
        let mut marks = AgentUsers::default();
        let marked = marks.refresh(&s, &policy);
        assert_eq!(marked, vec![(Arc::from("u2"), vec![Arc::from("u1")])]);
        let gone = departed(&s, &marked);
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
        let marked = marks.refresh(&s, &policy);
        let gone = departed(&s, &marked);
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
        assert!(!departed(&s, &marks.refresh(&s, &policy)).contains_key("a1"));
        s.apply(&[put(
            ResourceType::User,
            "u1",
            4,
            json!({"userName": "alice", "active": false}),
        )]);
        let again = departed(&s, &marks.refresh(&s, &policy));
        assert_ne!(again["a1"].key, first);
    }
}
