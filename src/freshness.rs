//! How current this replica's identity directory is, and what admission does when it is not.
//!
//! With the embedded store this process is the only writer, so its directory is current by
//! construction. With a shared store the directory is current as of its last successful sync
//! with the database; past `maxStaleness` admission fails closed (or, if configured, open with a
//! warning) and readiness drops. This module only keeps time; the writer reports syncs.

use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How a replica follows a shared (PostgreSQL) store, and what admission does when it can't.
#[derive(Debug, Clone, PartialEq)]
pub struct Replication {
    /// How often the directory checks the store for commits it missed (besides NOTIFY).
    pub poll: Duration,
    /// How often the directory is rebuilt from scratch.
    pub resync: Duration,
    /// Past this without a successful sync, admission applies `when_stale`.
    pub max_staleness: Duration,
    pub when_stale: WhenStale,
}

impl Default for Replication {
    fn default() -> Self {
        Replication {
            poll: Duration::from_millis(1000),
            resync: Duration::from_secs(300),
            max_staleness: Duration::from_secs(60),
            when_stale: WhenStale::Deny,
        }
    }
}

/// Admission's answer once the directory is older than `maxStalenessSeconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenStale {
    /// Fail closed: deny, saying the identity state is too old to decide on.
    #[default]
    Deny,
    /// Fail open: decide on the old state, with a warning.
    Allow,
}

#[derive(Debug)]
pub struct Freshness {
    /// Whether other processes write the store this directory follows.
    shared: bool,
    /// Unix milliseconds of the last successful sync.
    last_sync_ms: AtomicU64,
    pub max_staleness: Duration,
    pub when_stale: WhenStale,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl Freshness {
    /// A directory nobody else writes: never stale.
    pub fn sole_writer() -> Freshness {
        Freshness::new(false, &Replication::default())
    }

    pub fn new(shared: bool, r: &Replication) -> Freshness {
        Freshness {
            shared,
            last_sync_ms: AtomicU64::new(now_ms()),
            max_staleness: r.max_staleness,
            when_stale: r.when_stale,
        }
    }

    pub fn shared(&self) -> bool {
        self.shared
    }

    /// The directory matched the store just now.
    pub fn synced(&self) {
        self.last_sync_ms.fetch_max(now_ms(), Ordering::AcqRel);
    }

    /// Unix seconds of the last successful sync.
    pub fn last_sync_unix(&self) -> f64 {
        self.last_sync_ms.load(Ordering::Acquire) as f64 / 1000.0
    }

    /// Time since the directory last matched the store (zero for a sole writer).
    pub fn age(&self) -> Duration {
        if !self.shared {
            return Duration::ZERO;
        }
        Duration::from_millis(now_ms().saturating_sub(self.last_sync_ms.load(Ordering::Acquire)))
    }

    /// The age, if it is past `max_staleness`.
    pub fn stale_age(&self) -> Option<Duration> {
        let age = self.age();
        (age > self.max_staleness).then_some(age)
    }

    /// Why a decision can't rest on this directory, for messages.
    pub fn describe_stale(&self, age: Duration) -> String {
        format!(
            "the identity directory is {}s old, past the {}s limit (the identity store has been unreachable)",
            age.as_secs(),
            self.max_staleness.as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_shared_directory_ages() {
        let r = Replication {
            max_staleness: Duration::from_millis(20),
            ..Replication::default()
        };
        let sole = Freshness::new(false, &r);
        let shared = Freshness::new(true, &r);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(sole.stale_age(), None);
        let age = shared.stale_age().expect("stale");
        assert!(age >= Duration::from_millis(40), "{age:?}");
        shared.synced();
        assert_eq!(shared.stale_age(), None);
    }
}
