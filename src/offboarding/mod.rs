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
use serde::Deserialize;
use std::collections::BTreeMap;

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

/// Everyone the directory knows as departed, by SCIM id: users with `active: false`, and deleted
/// users (their tombstones) whose userName no one has taken since.
pub fn departed(snapshot: &Snapshot) -> BTreeMap<String, Departure> {
    let mut out = BTreeMap::new();
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
