//! The embedded store: one SQLite database in the data dir, WAL journal, `synchronous = FULL`,
//! so a commit that returned is on disk and survives `kill -9` (and power loss).
//!
//! Several processes may open the same file (`scimgate token create` next to a running server);
//! SQLite's locking serialises them and `busy_timeout` makes them wait instead of failing.
//! Nothing else in the server's process may open the database file: closing any descriptor of
//! it drops the process's POSIX locks, after which another process can checkpoint and remove
//! the WAL under SQLite's feet and this process reads a frozen state (a test that read the file
//! directly did exactly that).

use super::{sql, Change, Delta, Error, Loaded, Record, Result, Seq, Store, TokenRecord, TokenUse};
use crate::model::ResourceType;
use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::path::Path;
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
        // One read transaction: the rows and the sequence number are one consistent state.
        let mut tx = self.pool.begin().await?;
        let seq: Seq = sqlx::query_scalar("SELECT seq FROM commit_seq WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        // Streamed row by row: holding every row and its copy at once doubled the peak memory.
        let mut rows = sqlx::query("SELECT rtype, id, unique_key, version, body FROM resources").fetch(&mut *tx);
        let mut records = Vec::new();
        while let Some(row) = rows.try_next().await? {
            records.push(sql::record_from_row(&row)?);
        }
        drop(rows);
        let rows = sqlx::query("SELECT id, unique_key, deleted_at FROM tombstones WHERE rtype = 'User'")
            .fetch_all(&mut *tx)
            .await?;
        let agent_rows = sqlx::query("SELECT id, unique_key, deleted_at FROM tombstones WHERE rtype = 'Agent'")
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let tombstones = rows.iter().map(sql::tombstone_from_row).collect::<Result<Vec<_>>>()?;
        let agent_tombstones = agent_rows
            .iter()
            .map(sql::tombstone_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(Loaded {
            records,
            tombstones,
            agent_tombstones,
            seq,
        })
    }

    async fn head(&self) -> Result<Seq> {
        Ok(sqlx::query_scalar("SELECT seq FROM commit_seq WHERE id = 1")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn changes_since(&self, seq: Seq) -> Result<Option<Delta>> {
        let mut tx = self.pool.begin().await?;
        let head: Seq = sqlx::query_scalar("SELECT seq FROM commit_seq WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        if head <= seq {
            tx.commit().await?;
            return Ok(Some(Delta::at(head)));
        }
        let delta = delta_in(&mut tx, seq, head).await?;
        tx.commit().await?;
        Ok(delta)
    }

    async fn prune_changes(&self, before: &str) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM changes WHERE at < ?")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn commit_with(&self, base: Seq, plan: &mut (dyn FnMut(Delta) -> Vec<Change> + Send)) -> Result<Seq> {
        let mut tx = self.pool.begin().await?;
        let seq: Seq = sqlx::query_scalar("UPDATE commit_seq SET seq = seq + 1 WHERE id = 1 RETURNING seq")
            .fetch_one(&mut *tx)
            .await?;
        // With the sequence row locked nobody else can commit: catch up and plan in peace.
        let head = seq - 1;
        let delta = if head == base {
            Delta::at(head)
        } else {
            delta_in(&mut tx, base, head)
                .await?
                .ok_or(Error::Behind { base, head })?
        };
        let changes = plan(delta);
        if changes.is_empty() {
            tx.rollback().await?;
            return Ok(head);
        }
        let at = crate::model::clock::now();
        for change in &changes {
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
                    // A user's name taken again is no longer a deleted user's. An agent's
                    // tombstone stays: it is swept by id, whoever takes the name.
                    if r.rt == ResourceType::User {
                        sqlx::query("DELETE FROM tombstones WHERE rtype = 'User' AND unique_key = ?")
                            .bind(&*r.unique_key)
                            .execute(&mut *tx)
                            .await?;
                    }
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
                    // Deleted users and agents leave a tombstone: admission tells "deleted" from
                    // "never existed", and offboarding sweeps what they left.
                    if r.rt != ResourceType::Group {
                        sqlx::query(
                            "INSERT OR REPLACE INTO tombstones (rtype, id, unique_key, deleted_at) VALUES (?, ?, ?, ?)",
                        )
                        .bind(rtype_name(r.rt))
                        .bind(&*r.id)
                        .bind(&*r.unique_key)
                        .bind(crate::model::clock::now())
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
            let r = change.record();
            sqlx::query("INSERT OR IGNORE INTO changes (seq, rtype, id, at) VALUES (?, ?, ?, ?)")
                .bind(seq)
                .bind(rtype_name(r.rt))
                .bind(&*r.id)
                .bind(&at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(seq)
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(sql::TOKEN_SELECT).fetch_all(&self.pool).await?;
        rows.iter().map(sql::token_from_row).collect()
    }

    async fn insert_token(&self, t: &TokenRecord) -> Result<()> {
        sqlx::query("INSERT INTO tokens (id, name, scope, hash, created_at, revoked_at, expires_at) VALUES (?, ?, ?, ?, ?, NULL, ?)")
            .bind(&t.id)
            .bind(&t.name)
            .bind(t.scope.as_str())
            .bind(&t.hash[..])
            .bind(&t.created_at)
            .bind(&t.expires_at)
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

    async fn record_token_use(&self, uses: &[TokenUse]) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        // SQLite's two-argument max() is NULL when either is; '' orders before every time.
        let mut tx = self.pool.begin().await?;
        for u in uses {
            sqlx::query(
                "UPDATE tokens SET \
                 last_used_at = NULLIF(max(COALESCE(last_used_at, ''), COALESCE(?, '')), ''), \
                 last_write_at = NULLIF(max(COALESCE(last_write_at, ''), COALESCE(?, '')), '') \
                 WHERE id = ?",
            )
            .bind(&u.last_used_at)
            .bind(&u.last_write_at)
            .bind(&u.id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_decisions(
        &self,
        records: &[crate::model::DecisionRecord],
        marks: &[crate::model::ChainMark],
    ) -> Result<()> {
        // Multi-row INSERTs: at admission rates the per-statement overhead dominated.
        const ROWS: usize = 400; // 28 columns each, within SQLite's bound-parameter limit
        let mut tx = self.pool.begin().await?;
        for chunk in records.chunks(ROWS) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
                "INSERT OR IGNORE INTO decisions ({}) ",
                sql::DECISION_COLUMNS
            ));
            sql::push_decision_values(&mut q, chunk);
            q.build().execute(&mut *tx).await?;
        }
        if !marks.is_empty() {
            sql::insert_marks::<sqlx::Sqlite>(marks)
                .build()
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn decision_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM decisions")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn query_decisions(&self, q: &crate::model::DecisionQuery) -> Result<Vec<crate::model::DecisionRecord>> {
        let rows = sql::decision_query::<sqlx::Sqlite>(q)
            .build()
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sql::decision_from_row).collect()
    }

    async fn prune_candidates(&self, before: &str) -> Result<Vec<String>> {
        Ok(sql::prune_candidates::<sqlx::Sqlite>(before)
            .build_query_scalar()
            .fetch_all(&self.pool)
            .await?)
    }

    async fn prune_decisions(&self, mark: &crate::model::ChainMark, legacy: Option<&(String, String)>) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let [mut records, mut marks] = sql::prune::<sqlx::Sqlite>(mark, legacy);
        let deleted = records.build().execute(&mut *tx).await?.rows_affected();
        marks.build().execute(&mut *tx).await?;
        sql::insert_marks::<sqlx::Sqlite>(std::slice::from_ref(mark))
            .build()
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn chain_page(&self, after: Option<&(String, i64)>, limit: u32) -> Result<Vec<crate::model::DecisionRecord>> {
        let rows = sql::chain_page::<sqlx::Sqlite>(after, limit)
            .build()
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sql::decision_from_row).collect()
    }

    async fn legacy_page(
        &self,
        after: Option<&(String, String)>,
        limit: u32,
    ) -> Result<Vec<crate::model::DecisionRecord>> {
        let rows = sql::legacy_page::<sqlx::Sqlite>(after, limit)
            .build()
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sql::decision_from_row).collect()
    }

    async fn chain_marks(&self, filter: &super::MarkFilter) -> Result<Vec<crate::model::ChainMark>> {
        let rows = sql::chain_marks::<sqlx::Sqlite>(filter)
            .build()
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sql::mark_from_row).collect()
    }

    async fn latest_checkpoints(&self) -> Result<Vec<crate::model::ChainMark>> {
        let rows = sqlx::query(sql::LATEST_CHECKPOINTS).fetch_all(&self.pool).await?;
        rows.iter().map(sql::mark_from_row).collect()
    }

    async fn claim_offboarding(&self, c: &super::OffboardingClaim<'_>) -> Result<super::Claim> {
        let taken = sql::claim_offboarding(c)
            .build()
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1;
        let done = taken
            || sql::offboarding_done(c, false)
                .build_query_scalar()
                .fetch_one(&self.pool)
                .await?;
        Ok(super::Claim::of(taken, done))
    }

    async fn finish_offboarding(&self, c: &super::OffboardingClaim<'_>) -> Result<()> {
        sql::offboarding_done(c, true).build().execute(&self.pool).await?;
        Ok(())
    }

    async fn user_id_for(&self, user_name: &str) -> Result<Option<String>> {
        let key = crate::model::name::fold(user_name);
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

/// What changed after `seq` up to `head`, read on `conn` (inside the caller's transaction);
/// `None` when the change log no longer reaches back to `seq`.
async fn delta_in(conn: &mut sqlx::SqliteConnection, seq: Seq, head: Seq) -> Result<Option<Delta>> {
    let oldest: Option<Seq> = sqlx::query_scalar("SELECT min(seq) FROM changes")
        .fetch_one(&mut *conn)
        .await?;
    if oldest.is_none_or(|o| o > seq + 1) {
        return Ok(None);
    }
    let rows = sqlx::query(
        "SELECT c.rtype, c.id, r.unique_key, r.version, r.body, t.unique_key, t.deleted_at \
             FROM (SELECT DISTINCT rtype, id FROM changes WHERE seq > ? AND seq <= ?) c \
             LEFT JOIN resources r ON r.rtype = c.rtype AND r.id = c.id \
             LEFT JOIN tombstones t ON t.rtype = c.rtype AND t.id = c.id",
    )
    .bind(seq)
    .bind(head)
    .fetch_all(&mut *conn)
    .await?;
    let mut delta = Delta::at(head);
    for row in &rows {
        sql::add_delta_row(&mut delta, row)?;
    }
    Ok(Some(delta))
}
