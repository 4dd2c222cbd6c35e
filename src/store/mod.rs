//! Durable identity state: SCIM resources, tombstones of deleted users, and API tokens.
//!
//! Two backends behind [`Store`]: [`embedded`] (SQLite in the data dir, the default) and, later,
//! PostgreSQL. A backend stores what it is given atomically and reports conflicts; it does not
//! know SCIM rules (the writer and `scim/` decide what to write) and does not import axum.

pub mod embedded;

use crate::scim::schema::ResourceType;
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
}

#[derive(Debug, Default)]
pub struct Loaded {
    pub records: Vec<Record>,
    pub tombstones: Vec<Tombstone>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} already exists")]
    Unique(String),
    #[error("{0} was changed or removed concurrently")]
    Version(String),
    #[error("token '{0}' already exists")]
    TokenExists(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Everything, to build the directory at start.
    async fn load(&self) -> Result<Loaded>;
    /// Apply all changes in one transaction: all or nothing, durable when this returns `Ok`.
    async fn commit(&self, changes: &[Change]) -> Result<()>;
    async fn tokens(&self) -> Result<Vec<TokenRecord>>;
    async fn insert_token(&self, token: &TokenRecord) -> Result<()>;
    /// Revoke by name or id; returns whether a live token was revoked.
    async fn revoke_token(&self, name_or_id: &str, at: &str) -> Result<bool>;
    /// Append decision records in one transaction.
    async fn record_decisions(&self, records: &[crate::audit::DecisionRecord]) -> Result<()>;
    /// How many decision records are stored (operations and tests).
    async fn decision_count(&self) -> Result<i64>;
    /// Decision records matching `q`, newest first.
    async fn query_decisions(
        &self,
        q: &crate::audit::query::DecisionQuery,
    ) -> Result<Vec<crate::audit::DecisionRecord>>;
    /// Delete decision records older than `before` (RFC 3339); returns how many.
    async fn prune_decisions(&self, before: &str) -> Result<u64>;
    /// The SCIM id a userName has or had (tombstones count), for audit queries by name.
    async fn user_id_for(&self, user_name: &str) -> Result<Option<String>>;
}
