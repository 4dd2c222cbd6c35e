//! Durable identity state: SCIM resources, tombstones of deleted users, and API tokens.
//!
//! Two backends behind [`Store`]: [`embedded`] (SQLite in the data dir, the default) and
//! [`postgres`] (one database shared by several replicas). A backend stores what it is given
//! atomically and reports conflicts; it does not know SCIM rules (the writer and `scim/` decide
//! what to write) and does not import axum.
//!
//! Every commit of identity state takes the next number of one gapless sequence and logs the
//! resources it touched under it. A replica's directory remembers the number it reflects, so it
//! can ask for exactly what it missed ([`Store::changes_since`]), and every commit is planned
//! after applying what others committed first ([`Store::commit_with`]), so none overwrites what
//! it never saw.

pub mod embedded;
pub mod postgres;
mod sql;

use crate::model::ResourceType;
use async_trait::async_trait;
use std::sync::Arc;

/// One stored SCIM resource, as the directory and the store both hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub rt: ResourceType,
    pub id: Arc<str>,
    /// Lower-cased userName or displayName: the uniqueness key.
    pub unique_key: Arc<str>,
    /// Counts writes; `meta.version` is `W/"<version>"`.
    pub version: i64,
    /// The stored JSON document (see `scim::resource`).
    pub body: Arc<str>,
}

/// One durable change. A write is a list of these, applied atomically.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Insert (`previous: None`) or replace the row whose version is `previous`.
    Put { record: Record, previous: Option<i64> },
    /// Delete the row at `record.version`; users leave a tombstone so admission can tell
    /// "deleted" from "never existed".
    Delete { record: Record },
}

impl Change {
    pub fn record(&self) -> &Record {
        match self {
            Change::Put { record, .. } | Change::Delete { record } => record,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tombstone {
    pub id: Arc<str>,
    pub unique_key: Arc<str>,
    pub deleted_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// May provision over SCIM.
    Scim,
    /// May read the audit API.
    Audit,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Scim => "scim",
            Scope::Audit => "audit",
        }
    }
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "scim" => Some(Scope::Scim),
            "audit" => Some(Scope::Audit),
            _ => None,
        }
    }
}

/// An API token as stored: never the token itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    pub hash: [u8; 32],
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// When it stops working (`token create --expires`); `None`: never.
    pub expires_at: Option<String>,
    /// The last request it authenticated, as flushed to the store (see [`TokenUse`]).
    pub last_used_at: Option<String>,
    /// The last SCIM write it made (a successful POST, PUT, PATCH or DELETE other than a
    /// `.search`), as flushed to the store.
    pub last_write_at: Option<String>,
}

impl TokenRecord {
    /// Whether it has expired at `now` (RFC 3339 UTC with milliseconds, as the store keeps it).
    pub fn expired_at(&self, now: &str) -> bool {
        self.expires_at.as_deref().is_some_and(|e| e <= now)
    }
}

/// A server's record of a token's use since its last flush ([`Store::record_token_use`]); the
/// store keeps the later of each time and the one it has, so replicas flushing in any order
/// never move a time backwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUse {
    pub id: String,
    pub last_used_at: Option<String>,
    pub last_write_at: Option<String>,
}

/// Position in the commit sequence: the number of identity commits ever made.
pub type Seq = i64;

#[derive(Debug, Default)]
pub struct Loaded {
    pub records: Vec<Record>,
    pub tombstones: Vec<Tombstone>,
    /// Deleted agents (offboarding sweeps what they left).
    pub agent_tombstones: Vec<Tombstone>,
    /// The commit this state reflects.
    pub seq: Seq,
}

/// What changed after some commit, up to and including `seq`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Delta {
    pub seq: Seq,
    /// Resources as they are now.
    pub puts: Vec<Record>,
    /// Resources gone now, with the user tombstone if one was left.
    pub deletes: Vec<(ResourceType, Arc<str>, Option<Tombstone>)>,
}

impl Delta {
    /// Nothing changed: the store is at `seq`.
    pub fn at(seq: Seq) -> Delta {
        Delta {
            seq,
            ..Delta::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty()
    }
}

/// Where identity state lives, as the CLI and the config name it.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    /// SQLite in this data dir.
    Embedded(std::path::PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

impl Location {
    /// `embedded` (or nothing) means the data dir; otherwise a postgres:// URL.
    pub fn parse(store: Option<&str>, data_dir: &std::path::Path) -> std::result::Result<Location, String> {
        match store {
            None | Some("embedded") => Ok(Location::Embedded(data_dir.to_path_buf())),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Location::Postgres(url.to_string()))
            }
            Some(other) => Err(format!(
                "--store must be 'embedded' or a postgres:// URL, not '{}'",
                redact(other)
            )),
        }
    }

    /// Says where, without a password.
    pub fn describe(&self) -> String {
        match self {
            Location::Embedded(dir) => format!("the embedded store in {}", dir.display()),
            Location::Postgres(url) => format!("PostgreSQL at {}", redact(url)),
        }
    }
}

/// A URL with any password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unparseable URL)".to_string(),
    }
}

/// Open (and migrate) the store at `location`.
pub async fn open(location: &Location) -> Result<Arc<dyn Store>> {
    Ok(match location {
        Location::Embedded(dir) => Arc::new(embedded::Embedded::open(dir).await?),
        Location::Postgres(url) => Arc::new(postgres::Postgres::open(url).await?),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} already exists")]
    Unique(String),
    #[error("{0} was changed or removed concurrently")]
    Version(String),
    /// The change log no longer reaches back to the state a commit was planned on.
    #[error("the directory is behind the store (at {base}, store at {head})")]
    Behind { base: Seq, head: Seq },
    #[error("token '{0}' already exists")]
    TokenExists(String),
    #[error("database: {0}")]
    Database(sqlx::Error),
    #[error("migration: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Io(std::io::Error),
}

// The cause is part of each message, not a `source`: `{:#}` would print it twice.
impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Database(e)
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Error::Migrate(e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Everything, to build the directory at start (and on a full resync).
    async fn load(&self) -> Result<Loaded>;
    /// Take the next commit: with the sequence locked (other writers wait), hand `plan` what was
    /// committed after `base` (empty if nothing), and write the changes it returns in one
    /// transaction — all or nothing, durable when this returns the new sequence number. If `plan`
    /// returns nothing, nothing is written and the head it caught up to is returned.
    /// [`Error::Behind`] when the change log no longer reaches back to `base` (reload).
    ///
    /// Planning under the lock is what keeps a replica from starving: a commit planned outside it
    /// loses every race to a replica that commits back to back.
    async fn commit_with(&self, base: Seq, plan: &mut (dyn FnMut(Delta) -> Vec<Change> + Send)) -> Result<Seq>;

    /// The latest commit's number.
    async fn head(&self) -> Result<Seq>;
    /// What changed after `seq`, read consistently; `None` when the change log no longer
    /// reaches back that far (the caller reloads everything).
    async fn changes_since(&self, seq: Seq) -> Result<Option<Delta>>;
    /// Forget change-log entries older than `before` (RFC 3339); replicas further behind reload.
    async fn prune_changes(&self, before: &str) -> Result<u64>;
    async fn tokens(&self) -> Result<Vec<TokenRecord>>;
    async fn insert_token(&self, token: &TokenRecord) -> Result<()>;
    /// Revoke by name or id; returns whether a live token was revoked.
    async fn revoke_token(&self, name_or_id: &str, at: &str) -> Result<bool>;
    /// In one transaction, raise each token's `last_used_at` / `last_write_at` to the times in
    /// `uses` where they are later (never lower them; `None` leaves a time as it is).
    async fn record_token_use(&self, uses: &[TokenUse]) -> Result<()>;
    /// Append decision records and chain marks in one transaction.
    async fn record_decisions(
        &self,
        records: &[crate::model::DecisionRecord],
        marks: &[crate::model::ChainMark],
    ) -> Result<()>;
    /// How many decision records are stored (operations and tests).
    async fn decision_count(&self) -> Result<i64>;
    /// Decision records matching `q`, newest first.
    async fn query_decisions(&self, q: &crate::model::DecisionQuery) -> Result<Vec<crate::model::DecisionRecord>>;
    /// For retention: the replicas with a chained record older than `before` (RFC 3339). Which
    /// of their records may go is `audit::chain::prune`'s to check, not the store's.
    async fn prune_candidates(&self, before: &str) -> Result<Vec<String>>;
    /// In one transaction: delete the records `mark` (a prune mark) cuts — `mark.replica`'s up
    /// to `mark.seq`, or with `legacy`, the records in no chain up to that `(at, id)` in the
    /// order of [`Store::legacy_page`] — and the checkpoints and prune marks of `mark.replica` up
    /// to its seq (moot now), and store `mark`. Returns how many records went.
    async fn prune_decisions(&self, mark: &crate::model::ChainMark, legacy: Option<&(String, String)>) -> Result<u64>;
    /// Chained decision records after `(replica, seq)`, in chain order.
    async fn chain_page(&self, after: Option<&(String, i64)>, limit: u32) -> Result<Vec<crate::model::DecisionRecord>>;
    /// Records in no chain (written before chains existed, or inserted by hand) after `(at, id)`,
    /// ordered by `(at, id)`: the order the legacy seal hashes them in.
    async fn legacy_page(
        &self,
        after: Option<&(String, String)>,
        limit: u32,
    ) -> Result<Vec<crate::model::DecisionRecord>>;
    /// Chain marks (starts, checkpoints, prune marks, the legacy seal) that `filter` selects,
    /// ordered by replica, seq and kind.
    async fn chain_marks(&self, filter: &MarkFilter) -> Result<Vec<crate::model::ChainMark>>;
    /// Every replica's latest checkpoint (replicas found by their start marks), whatever its
    /// signature: the reader checks it.
    async fn latest_checkpoints(&self) -> Result<Vec<crate::model::ChainMark>>;
    /// The SCIM id a userName has or had (tombstones count), for audit queries by name.
    async fn user_id_for(&self, user_name: &str) -> Result<Option<String>>;
    /// Take or renew a departure's sweep for a replica ([`OffboardingClaim`]):
    /// [`Claim::Mine`] when it was free, that replica's already, or its holder's time ran out
    /// before `now`, and it is not done.
    async fn claim_offboarding(&self, claim: &OffboardingClaim<'_>) -> Result<Claim>;
    /// Mark `claim`'s departure swept: nobody takes it again.
    async fn finish_offboarding(&self, claim: &OffboardingClaim<'_>) -> Result<()>;
    /// Wake-ups when another process commits identity state, for stores several replicas share;
    /// `None` when this process is the only writer (its directory is then always current).
    async fn feed(&self) -> Result<Option<Box<dyn Feed>>> {
        Ok(None)
    }
}

/// A replica asking to sweep what person `user_id` left at `departure` (the offboarding
/// module's key for it) until `until`; times are RFC 3339 UTC with milliseconds, so they order as
/// text.
#[derive(Debug, Clone, Copy)]
pub struct OffboardingClaim<'a> {
    pub user_id: &'a str,
    pub departure: &'a str,
    pub replica: &'a str,
    pub now: &'a str,
    pub until: &'a str,
}

/// Who sweeps a departure ([`Store::claim_offboarding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This replica, now.
    Mine,
    /// Another replica, whose time has not run out.
    Held,
    /// Nobody: it was swept.
    Done,
}

impl Claim {
    /// From whether the claim took the row, and else whether the row is done.
    pub fn of(taken: bool, done: bool) -> Claim {
        match (taken, done) {
            (true, _) => Claim::Mine,
            (false, true) => Claim::Done,
            (false, false) => Claim::Held,
        }
    }
}

/// Which chain marks [`Store::chain_marks`] reads; every field left `None` matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarkFilter {
    pub replica: Option<String>,
    pub kind: Option<&'static str>,
    /// Inclusive.
    pub seqs: Option<(i64, i64)>,
}

/// What a [`Feed`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedEvent {
    /// Some replica committed (the payload is only a hint; read the log).
    Committed,
    /// The connection dropped and came back: notifications may have been missed.
    Reconnected,
}

#[async_trait]
pub trait Feed: Send {
    /// The next event; an error means the store is unreachable right now (call again to retry).
    async fn next(&mut self) -> Result<FeedEvent>;
}
