//! The embedded store: one SQLite database in the data dir, WAL journal, `synchronous = FULL`,
//! so a commit that returned is on disk and survives `kill -9` (and power loss).
//!
//! Several processes may open the same file (`scimgate token create` next to a running server);
//! SQLite's locking serialises them and `busy_timeout` makes them wait instead of failing.

use super::{Change, Error, Loaded, Record, Result, Scope, Store, TokenRecord, Tombstone};
use crate::scim::schema::ResourceType;
use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub const FILE: &str = "scimgate.db";

pub struct Embedded {
    pool: SqlitePool,
}

impl Embedded {
    pub async fn open(data_dir: &Path) -> Result<Embedded> {
        std::fs::create_dir_all(data_dir)?;
        let opts = SqliteConnectOptions::new()
            .filename(data_dir.join(FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Embedded { pool })
    }
}

fn rtype_name(rt: ResourceType) -> &'static str {
    rt.name()
}

fn conflict(e: sqlx::Error, what: &Record) -> Error {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            Error::Unique(format!("{} '{}'", what.rt.name(), what.unique_key))
        }
        _ => Error::Database(e),
    }
}

#[async_trait]
impl Store for Embedded {
    async fn load(&self) -> Result<Loaded> {
        // Streamed row by row: holding every row and its copy at once doubled the peak memory.
        let mut rows = sqlx::query("SELECT rtype, id, unique_key, version, body FROM resources").fetch(&self.pool);
        let mut records = Vec::new();
        while let Some(row) = rows.try_next().await? {
            let rtype: &str = row.try_get(0)?;
            let rt =
                ResourceType::from_name(rtype).ok_or_else(|| Error::Corrupt(format!("resource type '{rtype}'")))?;
            records.push(Record {
                rt,
                id: Arc::from(row.try_get::<&str, _>(1)?),
                unique_key: Arc::from(row.try_get::<&str, _>(2)?),
                version: row.try_get(3)?,
                body: Arc::from(row.try_get::<&str, _>(4)?),
            });
        }
        drop(rows);
        let rows = sqlx::query("SELECT id, unique_key, deleted_at FROM tombstones WHERE rtype = 'User'")
            .fetch_all(&self.pool)
            .await?;
        let mut tombstones = Vec::with_capacity(rows.len());
        for row in rows {
            tombstones.push(Tombstone {
                id: row.try_get::<String, _>(0)?.into(),
                unique_key: row.try_get::<String, _>(1)?.into(),
                deleted_at: row.try_get(2)?,
            });
        }
        Ok(Loaded { records, tombstones })
    }

    async fn commit(&self, changes: &[Change]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for change in changes {
            match change {
                Change::Put {
                    record: r,
                    previous: None,
                } => {
                    sqlx::query("INSERT INTO resources (rtype, id, unique_key, version, body) VALUES (?, ?, ?, ?, ?)")
                        .bind(rtype_name(r.rt))
                        .bind(&*r.id)
                        .bind(&*r.unique_key)
                        .bind(r.version)
                        .bind(&*r.body)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| conflict(e, r))?;
                    sqlx::query("DELETE FROM tombstones WHERE rtype = ? AND unique_key = ?")
                        .bind(rtype_name(r.rt))
                        .bind(&*r.unique_key)
                        .execute(&mut *tx)
                        .await?;
                }
                Change::Put {
                    record: r,
                    previous: Some(prev),
                } => {
                    let done = sqlx::query("UPDATE resources SET unique_key = ?, version = ?, body = ? WHERE rtype = ? AND id = ? AND version = ?")
                        .bind(&*r.unique_key)
                        .bind(r.version)
                        .bind(&*r.body)
                        .bind(rtype_name(r.rt))
                        .bind(&*r.id)
                        .bind(prev)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| conflict(e, r))?;
                    if done.rows_affected() != 1 {
                        return Err(Error::Version(format!("{} {}", r.rt.name(), r.id)));
                    }
                }
                Change::Delete { record: r } => {
                    let done = sqlx::query("DELETE FROM resources WHERE rtype = ? AND id = ? AND version = ?")
                        .bind(rtype_name(r.rt))
                        .bind(&*r.id)
                        .bind(r.version)
                        .execute(&mut *tx)
                        .await?;
                    if done.rows_affected() != 1 {
                        return Err(Error::Version(format!("{} {}", r.rt.name(), r.id)));
                    }
                    if r.rt == ResourceType::User {
                        sqlx::query(
                            "INSERT OR REPLACE INTO tombstones (rtype, id, unique_key, deleted_at) VALUES (?, ?, ?, ?)",
                        )
                        .bind(rtype_name(r.rt))
                        .bind(&*r.id)
                        .bind(&*r.unique_key)
                        .bind(crate::scim::now())
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows =
            sqlx::query("SELECT id, name, scope, hash, created_at, revoked_at FROM tokens ORDER BY created_at, name")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|row| {
                let scope: String = row.try_get(2)?;
                let hash: Vec<u8> = row.try_get(3)?;
                Ok(TokenRecord {
                    id: row.try_get(0)?,
                    name: row.try_get(1)?,
                    scope: Scope::parse(&scope).ok_or_else(|| Error::Corrupt(format!("token scope '{scope}'")))?,
                    hash: hash
                        .try_into()
                        .map_err(|_| Error::Corrupt("token hash length".into()))?,
                    created_at: row.try_get(4)?,
                    revoked_at: row.try_get(5)?,
                })
            })
            .collect()
    }

    async fn insert_token(&self, t: &TokenRecord) -> Result<()> {
        sqlx::query("INSERT INTO tokens (id, name, scope, hash, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, NULL)")
            .bind(&t.id)
            .bind(&t.name)
            .bind(t.scope.as_str())
            .bind(&t.hash[..])
            .bind(&t.created_at)
            .execute(&self.pool)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.is_unique_violation() => Error::TokenExists(t.name.clone()),
                _ => Error::Database(e),
            })?;
        Ok(())
    }

    async fn revoke_token(&self, name_or_id: &str, at: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE tokens SET revoked_at = ? WHERE (name = ? OR id = ?) AND revoked_at IS NULL")
            .bind(at)
            .bind(name_or_id)
            .bind(name_or_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_decisions(&self, records: &[crate::audit::DecisionRecord]) -> Result<()> {
        // Multi-row INSERTs: at admission rates the per-statement overhead dominated.
        const ROWS: usize = 400; // 20 columns each, within SQLite's bound-parameter limit
        let mut tx = self.pool.begin().await?;
        for chunk in records.chunks(ROWS) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT OR IGNORE INTO decisions (id, at, request_uid, hook, kind, namespace, name, action, requester, user_id, \
                 groups, rule, outcome, mode, reason, latency_us, policy, run_as, templates, submitter_id) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(&r.id)
                    .push_bind(&r.at)
                    .push_bind(&r.request_uid)
                    .push_bind(&r.hook)
                    .push_bind(&r.kind)
                    .push_bind(&r.namespace)
                    .push_bind(&r.name)
                    .push_bind(&r.action)
                    .push_bind(&r.requester)
                    .push_bind(&r.user_id)
                    .push_bind(&r.groups)
                    .push_bind(&r.rule)
                    .push_bind(&r.outcome)
                    .push_bind(&r.mode)
                    .push_bind(&r.reason)
                    .push_bind(r.latency_us)
                    .push_bind(&r.policy)
                    .push_bind(&r.run_as)
                    .push_bind(&r.templates)
                    .push_bind(&r.submitter_id);
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn decision_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM decisions")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn query_decisions(
        &self,
        q: &crate::audit::query::DecisionQuery,
    ) -> Result<Vec<crate::audit::DecisionRecord>> {
        let mut b = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT id, at, request_uid, hook, kind, namespace, name, action, requester, user_id, groups, rule, outcome, mode, reason, \
             latency_us, policy, run_as, templates, submitter_id FROM decisions WHERE 1 = 1",
        );
        for (col, v) in [
            ("user_id", &q.user_id),
            ("requester", &q.requester),
            ("namespace", &q.namespace),
            ("kind", &q.kind),
            ("action", &q.action),
            ("outcome", &q.outcome),
            ("rule", &q.rule),
            ("request_uid", &q.request_uid),
        ] {
            if let Some(v) = v {
                b.push(format!(" AND {col} = ")).push_bind(v.clone());
            }
        }
        if let Some(g) = &q.group {
            b.push(" AND (',' || groups || ',') LIKE ")
                .push_bind(format!("%,{},%", g.to_lowercase()));
        }
        if let Some(t) = &q.from {
            b.push(" AND at >= ").push_bind(t.clone());
        }
        if let Some(t) = &q.to {
            b.push(" AND at < ").push_bind(t.clone());
        }
        if let Some(a) = &q.after {
            b.push(" AND id < ").push_bind(a.clone());
        }
        let limit = if q.limit == 0 {
            crate::audit::query::DEFAULT_LIMIT
        } else {
            q.limit.min(crate::audit::query::MAX_LIMIT)
        };
        b.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit));
        let rows = b.build().fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|r| {
                Ok(crate::audit::DecisionRecord {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    request_uid: r.try_get(2)?,
                    hook: r.try_get(3)?,
                    kind: r.try_get(4)?,
                    namespace: r.try_get(5)?,
                    name: r.try_get(6)?,
                    action: r.try_get(7)?,
                    requester: r.try_get(8)?,
                    user_id: r.try_get(9)?,
                    groups: r.try_get(10)?,
                    rule: r.try_get(11)?,
                    outcome: r.try_get(12)?,
                    mode: r.try_get(13)?,
                    reason: r.try_get(14)?,
                    latency_us: r.try_get(15)?,
                    policy: r.try_get(16)?,
                    run_as: r.try_get(17)?,
                    templates: r.try_get(18)?,
                    submitter_id: r.try_get(19)?,
                })
            })
            .collect()
    }

    async fn prune_decisions(&self, before: &str) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM decisions WHERE at < ?")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn user_id_for(&self, user_name: &str) -> Result<Option<String>> {
        let key = user_name.to_lowercase();
        let live: Option<String> =
            sqlx::query_scalar("SELECT id FROM resources WHERE rtype = 'User' AND unique_key = ?")
                .bind(&key)
                .fetch_optional(&self.pool)
                .await?;
        if live.is_some() {
            return Ok(live);
        }
        Ok(
            sqlx::query_scalar("SELECT id FROM tombstones WHERE rtype = 'User' AND unique_key = ?")
                .bind(&key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
