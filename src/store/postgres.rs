//! The PostgreSQL store, shared by several replicas.
//!
//! Identity commits serialise on the one `commit_seq` row: each takes the next number while
//! holding its row lock, so numbers follow commit order without gaps, and each is planned under
//! that lock after applying what other replicas committed since its directory's number.
//! Each commit ends with `NOTIFY` so the other replicas catch up at once; the change log lets
//! them read exactly what they missed. Migrations run under sqlx's advisory lock, so replicas
//! starting together migrate once.

use super::{sql, Change, Delta, Error, Feed, FeedEvent, Loaded, Record, Result, Seq, Store, TokenRecord, TokenUse};
use crate::model::ResourceType;
use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres as Pg};
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The NOTIFY channel commits announce themselves on.
const CHANNEL: &str = "scimgate_changes";

pub struct Postgres {
    pool: PgPool,
}

impl Postgres {
    pub async fn open(url: &str) -> Result<Postgres> {
        let opts = PgConnectOptions::from_str(url)?.application_name("scimgate");
        let pool = PgPoolOptions::new()
            .max_connections(8)
            // A database that is away must fail requests quickly (SCIM answers 503, the IdP
            // retries) rather than hold them for the default 30 s.
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Postgres { pool })
    }
}

fn conflict(e: sqlx::Error, what: &Record) -> Error {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            Error::Unique(format!("{} '{}'", what.rt.name(), what.unique_key))
        }
        _ => Error::Database(e),
    }
}

/// A transaction that sees one consistent state of the whole database.
async fn snapshot(pool: &PgPool) -> Result<sqlx::Transaction<'static, Pg>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

#[async_trait]
impl Store for Postgres {
    async fn load(&self) -> Result<Loaded> {
        let mut tx = snapshot(&self.pool).await?;
        let seq: Seq = sqlx::query_scalar("SELECT seq FROM commit_seq WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let mut records = Vec::new();
        {
            let mut rows = sqlx::query("SELECT rtype, id, unique_key, version, body FROM resources").fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                records.push(sql::record_from_row(&row)?);
            }
        }
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

    async fn commit_with(&self, base: Seq, plan: &mut (dyn FnMut(Delta) -> Vec<Change> + Send)) -> Result<Seq> {
        let mut tx = self.pool.begin().await?;
        // Waits for any other replica's commit in flight, then takes the next number.
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
        // Runs of new resources go in one multi-row INSERT: a SCIM burst from the IdP is mostly
        // creates, and one round trip per row was most of a commit's time. Order is kept: a run
        // is written before the next update or delete.
        let mut inserts: Vec<&Record> = Vec::new();
        for change in &changes {
            if let Change::Put {
                record: r,
                previous: None,
            } = change
            {
                inserts.push(r);
                continue;
            }
            insert_all(&mut tx, &inserts).await?;
            inserts.clear();
            match change {
                Change::Put { previous: None, .. } => {}
                Change::Put {
                    record: r,
                    previous: Some(prev),
                } => {
                    let done = sqlx::query(
                        "UPDATE resources SET unique_key = $1, version = $2, body = $3 \
                         WHERE rtype = $4 AND id = $5 AND version = $6",
                    )
                    .bind(&*r.unique_key)
                    .bind(r.version)
                    .bind(&*r.body)
                    .bind(r.rt.name())
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
                    let done = sqlx::query("DELETE FROM resources WHERE rtype = $1 AND id = $2 AND version = $3")
                        .bind(r.rt.name())
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
                            "INSERT INTO tombstones (rtype, id, unique_key, deleted_at) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (rtype, id) DO UPDATE SET unique_key = EXCLUDED.unique_key, \
                             deleted_at = EXCLUDED.deleted_at",
                        )
                        .bind(r.rt.name())
                        .bind(&*r.id)
                        .bind(&*r.unique_key)
                        .bind(&at)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
        }
        insert_all(&mut tx, &inserts).await?;
        let mut log = sqlx::QueryBuilder::<Pg>::new("INSERT INTO changes (seq, rtype, id, at) ");
        log.push_values(changes.iter().map(Change::record), |mut v, r| {
            v.push_bind(seq).push_bind(r.rt.name()).push_bind(&*r.id).push_bind(&at);
        });
        log.push(" ON CONFLICT DO NOTHING");
        log.build().execute(&mut *tx).await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(seq.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(seq)
    }

    async fn head(&self) -> Result<Seq> {
        Ok(sqlx::query_scalar("SELECT seq FROM commit_seq WHERE id = 1")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn changes_since(&self, seq: Seq) -> Result<Option<Delta>> {
        let mut tx = snapshot(&self.pool).await?;
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
        Ok(sqlx::query("DELETE FROM changes WHERE at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(sql::TOKEN_SELECT).fetch_all(&self.pool).await?;
        rows.iter().map(sql::token_from_row).collect()
    }

    async fn insert_token(&self, t: &TokenRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO tokens (id, name, scope, hash, created_at, revoked_at, expires_at) VALUES ($1, $2, $3, $4, $5, NULL, $6)",
        )
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
        let done = sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE (name = $2 OR id = $2) AND revoked_at IS NULL")
            .bind(at)
            .bind(name_or_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_token_use(&self, uses: &[TokenUse]) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        // GREATEST ignores NULLs: a time only ever moves forward, whichever replica flushes last.
        let mut tx = self.pool.begin().await?;
        for u in uses {
            sqlx::query(
                "UPDATE tokens SET last_used_at = GREATEST(last_used_at, $1), \
                 last_write_at = GREATEST(last_write_at, $2) WHERE id = $3",
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
        // 28 parameters a row, within PostgreSQL's 65,535 per statement.
        const ROWS: usize = 1_000;
        let mut tx = self.pool.begin().await?;
        for chunk in records.chunks(ROWS) {
            let mut q = sqlx::QueryBuilder::<Pg>::new(format!("INSERT INTO decisions ({}) ", sql::DECISION_COLUMNS));
            sql::push_decision_values(&mut q, chunk);
            q.push(" ON CONFLICT DO NOTHING");
            q.build().execute(&mut *tx).await?;
        }
        if !marks.is_empty() {
            sql::insert_marks::<Pg>(marks).build().execute(&mut *tx).await?;
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
        let rows = sql::decision_query::<Pg>(q).build().fetch_all(&self.pool).await?;
        rows.iter().map(sql::decision_from_row).collect()
    }

    async fn prune_candidates(&self, before: &str) -> Result<Vec<String>> {
        Ok(sql::prune_candidates::<Pg>(before)
            .build_query_scalar()
            .fetch_all(&self.pool)
            .await?)
    }

    async fn prune_decisions(&self, mark: &crate::model::ChainMark, legacy: Option<&(String, String)>) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let [mut records, mut marks] = sql::prune::<Pg>(mark, legacy);
        let deleted = records.build().execute(&mut *tx).await?.rows_affected();
        marks.build().execute(&mut *tx).await?;
        sql::insert_marks::<Pg>(std::slice::from_ref(mark))
            .build()
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn chain_page(&self, after: Option<&(String, i64)>, limit: u32) -> Result<Vec<crate::model::DecisionRecord>> {
        let rows = sql::chain_page::<Pg>(after, limit)
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
        let rows = sql::legacy_page::<Pg>(after, limit)
            .build()
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sql::decision_from_row).collect()
    }

    async fn chain_marks(&self, filter: &super::MarkFilter) -> Result<Vec<crate::model::ChainMark>> {
        let rows = sql::chain_marks::<Pg>(filter).build().fetch_all(&self.pool).await?;
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
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM resources WHERE rtype = 'User' AND unique_key = $1 \
             UNION ALL SELECT id FROM tombstones WHERE rtype = 'User' AND unique_key = $1 LIMIT 1",
        )
        .bind(&key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id)
    }

    async fn feed(&self) -> Result<Option<Box<dyn Feed>>> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        Ok(Some(Box::new(Notifications { listener })))
    }
}

struct Notifications {
    listener: PgListener,
}

#[async_trait]
impl Feed for Notifications {
    async fn next(&mut self) -> Result<FeedEvent> {
        // `try_recv` reconnects (and re-subscribes) before saying the connection was lost.
        Ok(match self.listener.try_recv().await? {
            Some(_) => FeedEvent::Committed,
            None => FeedEvent::Reconnected,
        })
    }
}

/// What changed after `seq` up to `head`, read on `conn` (inside the caller's transaction);
/// `None` when the change log no longer reaches back to `seq`.
async fn delta_in(conn: &mut sqlx::PgConnection, seq: Seq, head: Seq) -> Result<Option<Delta>> {
    let oldest: Option<Seq> = sqlx::query_scalar("SELECT min(seq) FROM changes")
        .fetch_one(&mut *conn)
        .await?;
    if oldest.is_none_or(|o| o > seq + 1) {
        return Ok(None);
    }
    let rows = sqlx::query(
        "SELECT c.rtype, c.id, r.unique_key, r.version, r.body, t.unique_key, t.deleted_at \
             FROM (SELECT DISTINCT rtype, id FROM changes WHERE seq > $1 AND seq <= $2) c \
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

/// Insert new resources in one statement; the first that collides with a live one (id or
/// uniqueness key) is reported as [`Error::Unique`]. Re-creating a deleted user's name clears
/// its tombstone.
async fn insert_all(conn: &mut sqlx::PgConnection, records: &[&Record]) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut q = sqlx::QueryBuilder::<Pg>::new("INSERT INTO resources (rtype, id, unique_key, version, body) ");
    q.push_values(records, |mut v, r| {
        v.push_bind(r.rt.name())
            .push_bind(&*r.id)
            .push_bind(&*r.unique_key)
            .push_bind(r.version)
            .push_bind(&*r.body);
    });
    q.push(" ON CONFLICT DO NOTHING RETURNING id");
    let inserted: Vec<String> = q.build_query_scalar().fetch_all(&mut *conn).await?;
    if inserted.len() != records.len() {
        let inserted: std::collections::HashSet<&str> = inserted.iter().map(String::as_str).collect();
        if let Some(r) = records.iter().find(|r| !inserted.contains(&*r.id)) {
            return Err(Error::Unique(format!("{} '{}'", r.rt.name(), r.unique_key)));
        }
    }
    let users: Vec<&str> = records
        .iter()
        .filter(|r| r.rt == ResourceType::User)
        .map(|r| &*r.unique_key)
        .collect();
    if !users.is_empty() {
        sqlx::query("DELETE FROM tombstones WHERE rtype = 'User' AND unique_key = ANY($1)")
            .bind(&users)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
