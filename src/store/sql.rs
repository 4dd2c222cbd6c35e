//! SQL both backends share, written once over `sqlx::Database`: the decision-log columns, the
//! audit-query filters and the mapping of every row type. Only placeholders and a few statements
//! differ between SQLite and PostgreSQL, and `QueryBuilder` writes the placeholders.

use super::{Delta, Error, MarkFilter, OffboardingClaim, Record, Result, Scope, TokenRecord, Tombstone};
use crate::model::decision::{DecisionQuery, DEFAULT_LIMIT, MAX_LIMIT};
use crate::model::ResourceType;
use crate::model::{ChainMark, DecisionRecord, Link};
use sqlx::{Database, Decode, Encode, QueryBuilder, Row, Type};
use std::sync::Arc;

pub const DECISION_COLUMNS: &str = "id, at, request_uid, hook, kind, namespace, name, action, requester, user_id, \
     groups, rule, outcome, mode, reason, latency_us, policy, run_as, templates, submitter_id, stamp_id, \
     authenticated, replica, seq, prev_hash, hash, prior_decision, on_behalf_of";

pub const MARK_COLUMNS: &str = "replica, seq, kind, hash, at, signature";

/// `VALUES (…), (…)` for `records`, in [`DECISION_COLUMNS`] order.
pub fn push_decision_values<'a, DB: Database>(b: &mut QueryBuilder<'a, DB>, records: &'a [DecisionRecord])
where
    String: Encode<'a, DB> + Type<DB>,
    Option<String>: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    Option<i64>: Encode<'a, DB> + Type<DB>,
    bool: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
{
    b.push_values(records, |mut v, r| {
        let link = r.link.as_ref();
        v.push_bind(&r.id)
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
            .push_bind(&r.submitter_id)
            .push_bind(&r.stamp_id)
            .push_bind(r.authenticated)
            .push_bind(link.map(|l| l.replica.as_str()))
            .push_bind(link.map(|l| l.seq))
            .push_bind(link.map(|l| l.prev_hash.as_str()))
            .push_bind(link.map(|l| l.hash.as_str()))
            .push_bind(&r.prior_decision)
            .push_bind(&r.on_behalf_of);
    });
}

/// `VALUES (…)` for `marks`, in [`MARK_COLUMNS`] order.
fn push_mark_values<'a, DB: Database>(b: &mut QueryBuilder<'a, DB>, marks: &'a [ChainMark])
where
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    b.push_values(marks, |mut v, m| {
        v.push_bind(&m.replica)
            .push_bind(m.seq)
            .push_bind(&m.kind)
            .push_bind(&m.hash)
            .push_bind(&m.at)
            .push_bind(&m.signature);
    });
}

/// One row of `SELECT MARK_COLUMNS FROM decision_marks`.
pub fn mark_from_row<R: Row>(r: &R) -> Result<ChainMark>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(ChainMark {
        replica: r.try_get(0)?,
        seq: r.try_get(1)?,
        kind: r.try_get(2)?,
        hash: r.try_get(3)?,
        at: r.try_get(4)?,
        signature: r.try_get(5)?,
    })
}

/// Chained records after `(replica, seq)` in chain order, at most `limit`.
pub fn chain_page<'a, DB: Database>(after: Option<&(String, i64)>, limit: u32) -> QueryBuilder<'a, DB>
where
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    page_after("replica IS NOT NULL", ("replica", "seq"), after.cloned(), limit)
}

/// Unchained records after `(at, id)`, ordered by `(at, id)`, at most `limit`.
pub fn legacy_page<'a, DB: Database>(after: Option<&(String, String)>, limit: u32) -> QueryBuilder<'a, DB>
where
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    page_after("replica IS NULL", ("at", "id"), after.cloned(), limit)
}

/// Records matching `filter`, ordered by the columns `order`, after the key `after` in that
/// order (keyset paging: each page is an index range, however deep), at most `limit`.
fn page_after<'a, DB: Database, K: Encode<'a, DB> + Type<DB> + Clone + 'a>(
    filter: &str,
    (first, second): (&str, &str),
    after: Option<(String, K)>,
    limit: u32,
) -> QueryBuilder<'a, DB>
where
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut b = QueryBuilder::<DB>::new(format!("SELECT {DECISION_COLUMNS} FROM decisions WHERE {filter}"));
    if let Some((a, k)) = after {
        b.push(format!(" AND ({first} > "))
            .push_bind(a.clone())
            .push(format!(" OR ({first} = "))
            .push_bind(a)
            .push(format!(" AND {second} > "))
            .push_bind(k)
            .push("))");
    }
    b.push(format!(" ORDER BY {first}, {second} LIMIT "))
        .push_bind(i64::from(limit));
    b
}

/// `SELECT MARK_COLUMNS FROM decision_marks` for `f`.
pub fn chain_marks<'a, DB: Database>(f: &MarkFilter) -> QueryBuilder<'a, DB>
where
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut b = QueryBuilder::<DB>::new(format!("SELECT {MARK_COLUMNS} FROM decision_marks WHERE 1 = 1"));
    if let Some(r) = &f.replica {
        b.push(" AND replica = ").push_bind(r.clone());
    }
    if let Some(k) = f.kind {
        b.push(" AND kind = ").push_bind(k.to_string());
    }
    if let Some((from, to)) = f.seqs {
        b.push(" AND seq >= ")
            .push_bind(from)
            .push(" AND seq <= ")
            .push_bind(to);
    }
    b.push(" ORDER BY replica, seq, kind");
    b
}

/// Each replica's latest checkpoint, replicas found by their start marks: one index lookup per
/// replica (the checkpoints themselves can be hundreds of thousands).
pub const LATEST_CHECKPOINTS: &str = "SELECT c.replica, c.seq, c.kind, c.hash, c.at, c.signature \
     FROM decision_marks s JOIN decision_marks c ON c.replica = s.replica AND c.kind = 'checkpoint' \
     AND c.seq = (SELECT MAX(x.seq) FROM decision_marks x WHERE x.replica = s.replica AND x.kind = 'checkpoint') \
     WHERE s.kind = 'start' ORDER BY c.replica";

/// Replicas with a chained record older than `before`.
pub fn prune_candidates<'a, DB: Database>(before: &str) -> QueryBuilder<'a, DB>
where
    String: Encode<'a, DB> + Type<DB>,
{
    let mut b = QueryBuilder::<DB>::new("SELECT DISTINCT replica FROM decisions WHERE replica IS NOT NULL AND at < ");
    b.push_bind(before.to_string());
    b
}

/// The statements of a prune: the records up to `mark` — its replica's up to its seq, or with
/// `legacy`, the records in no chain up to that `(at, id)` — then the checkpoints and prune marks
/// of `mark`'s replica it makes moot.
pub fn prune<'a, DB: Database>(mark: &ChainMark, legacy: Option<&(String, String)>) -> [QueryBuilder<'a, DB>; 2]
where
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut records = QueryBuilder::<DB>::new("DELETE FROM decisions WHERE ");
    match legacy {
        None => records
            .push("replica = ")
            .push_bind(mark.replica.clone())
            .push(" AND seq <= ")
            .push_bind(mark.seq),
        Some((at, id)) => records
            .push("replica IS NULL AND (at < ")
            .push_bind(at.clone())
            .push(" OR (at = ")
            .push_bind(at.clone())
            .push(" AND id <= ")
            .push_bind(id.clone())
            .push("))"),
    };
    [records, moot_marks(mark)]
}

/// Checkpoints and prune marks of `mark`'s replica up to its seq: a prune mark there replaces them.
fn moot_marks<'a, DB: Database>(mark: &ChainMark) -> QueryBuilder<'a, DB>
where
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut b = QueryBuilder::<DB>::new("DELETE FROM decision_marks WHERE replica = ");
    b.push_bind(mark.replica.clone())
        .push(" AND kind IN ('checkpoint', 'prune') AND seq <= ")
        .push_bind(mark.seq);
    b
}

/// `INSERT` of `marks`, a mark already there (another replica stored the same) kept.
pub fn insert_marks<'a, DB: Database>(marks: &'a [ChainMark]) -> QueryBuilder<'a, DB>
where
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut b = QueryBuilder::<DB>::new(format!("INSERT INTO decision_marks ({MARK_COLUMNS}) "));
    push_mark_values(&mut b, marks);
    b.push(" ON CONFLICT DO NOTHING");
    b
}

/// `SELECT … FROM decisions WHERE …` for `q`, newest first, limited.
pub fn decision_query<'a, DB: Database>(q: &DecisionQuery) -> QueryBuilder<'a, DB>
where
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut b = QueryBuilder::<DB>::new(format!("SELECT {DECISION_COLUMNS} FROM decisions WHERE 1 = 1"));
    // Who: the requester filters, and for a person also what agents did on their behalf.
    let who: Vec<(&str, &String)> = [("user_id", &q.user_id), ("requester", &q.requester)]
        .into_iter()
        .filter_map(|(col, v)| v.as_ref().map(|v| (col, v)))
        .collect();
    match &q.or_on_behalf_of {
        None => {
            for (col, v) in who {
                b.push(format!(" AND {col} = ")).push_bind(v.clone());
            }
        }
        Some(person) if who.is_empty() => {
            b.push(" AND on_behalf_of = ").push_bind(person.clone());
        }
        Some(person) => {
            b.push(" AND ((");
            for (i, (col, v)) in who.into_iter().enumerate() {
                b.push(format!("{}{col} = ", if i == 0 { "" } else { " AND " }))
                    .push_bind(v.clone());
            }
            b.push(") OR on_behalf_of = ").push_bind(person.clone()).push(")");
        }
    }
    for (col, v) in [
        ("namespace", &q.namespace),
        ("name", &q.name),
        ("kind", &q.kind),
        ("action", &q.action),
        ("outcome", &q.outcome),
        ("rule", &q.rule),
        ("request_uid", &q.request_uid),
        ("stamp_id", &q.stamp_id),
    ] {
        if let Some(v) = v {
            b.push(format!(" AND {col} = ")).push_bind(v.clone());
        }
    }
    if let Some(g) = &q.group {
        b.push(" AND (',' || groups || ',') LIKE ")
            .push_bind(format!("%,{},%", crate::model::name::fold(g)));
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
        DEFAULT_LIMIT
    } else {
        q.limit.min(MAX_LIMIT)
    };
    b.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit));
    b
}

/// One row of [`decision_query`].
pub fn decision_from_row<R: Row>(r: &R) -> Result<DecisionRecord>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + Type<R::Database>,
{
    let replica: Option<String> = r.try_get(22)?;
    let link = match replica {
        Some(replica) => Some(Link {
            replica,
            seq: r.try_get::<Option<i64>, _>(23)?.unwrap_or_default(),
            prev_hash: r.try_get::<Option<String>, _>(24)?.unwrap_or_default(),
            hash: r.try_get::<Option<String>, _>(25)?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(DecisionRecord {
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
        stamp_id: r.try_get(20)?,
        authenticated: r.try_get(21)?,
        prior_decision: r.try_get(26)?,
        on_behalf_of: r.try_get(27)?,
        link,
    })
}

/// `SELECT rtype, id, unique_key, version, body FROM resources`, one row. Decoded from borrowed
/// text: a full load streams every row, and an owned copy per column doubled its peak memory.
pub fn record_from_row<R: Row>(row: &R) -> Result<Record>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let rtype: &str = row.try_get(0)?;
    let rt = ResourceType::from_name(rtype).ok_or_else(|| Error::Corrupt(format!("resource type '{rtype}'")))?;
    Ok(Record {
        rt,
        id: Arc::from(row.try_get::<&str, _>(1)?),
        unique_key: Arc::from(row.try_get::<&str, _>(2)?),
        version: row.try_get(3)?,
        body: Arc::from(row.try_get::<&str, _>(4)?),
    })
}

/// `SELECT id, unique_key, deleted_at FROM tombstones`, one row.
pub fn tombstone_from_row<R: Row>(row: &R) -> Result<Tombstone>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Tombstone {
        id: row.try_get::<String, _>(0)?.into(),
        unique_key: row.try_get::<String, _>(1)?.into(),
        deleted_at: row.try_get(2)?,
    })
}

/// Every token, oldest first, in the columns [`token_from_row`] reads.
pub const TOKEN_SELECT: &str = "SELECT id, name, scope, hash, created_at, revoked_at, expires_at, last_used_at, \
                                last_write_at FROM tokens ORDER BY created_at, name";

/// [`TOKEN_SELECT`], one row.
pub fn token_from_row<R: Row>(row: &R) -> Result<TokenRecord>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
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
        expires_at: row.try_get(6)?,
        last_used_at: row.try_get(7)?,
        last_write_at: row.try_get(8)?,
    })
}

/// Add one row of a change-log read (`c.rtype, c.id, r.unique_key, r.version, r.body,
/// t.unique_key, t.deleted_at`) to `delta`: the resource as it is now, or its absence (with
/// the user's tombstone, if any).
pub fn add_delta_row<R: Row>(delta: &mut Delta, row: &R) -> Result<()>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let rtype: String = row.try_get(0)?;
    let rt = ResourceType::from_name(&rtype).ok_or_else(|| Error::Corrupt(format!("resource type '{rtype}'")))?;
    let id: Arc<str> = Arc::from(row.try_get::<String, _>(1)?);
    let unique_key: Option<String> = row.try_get(2)?;
    let version: Option<i64> = row.try_get(3)?;
    let body: Option<String> = row.try_get(4)?;
    match (unique_key, version, body) {
        (Some(unique_key), Some(version), Some(body)) => delta.puts.push(Record {
            rt,
            id,
            unique_key: Arc::from(unique_key),
            version,
            body: Arc::from(body),
        }),
        _ => {
            let tombstone = row
                .try_get::<Option<String>, _>(5)?
                .zip(row.try_get::<Option<String>, _>(6)?)
                .map(|(unique_key, deleted_at)| Tombstone {
                    id: id.clone(),
                    unique_key: Arc::from(unique_key),
                    deleted_at,
                });
            delta.deletes.push((rt, id, tombstone));
        }
    }
    Ok(())
}

/// Take or renew `c`: affects one row exactly when the claim is the replica's now.
pub fn claim_offboarding<'a, DB: Database>(c: &OffboardingClaim<'a>) -> QueryBuilder<'a, DB>
where
    &'a str: Encode<'a, DB> + Type<DB>,
    bool: Encode<'a, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new("INSERT INTO offboarding_claims (user_id, departure, replica, until, done) VALUES (");
    q.separated(", ")
        .push_bind(c.user_id)
        .push_bind(c.departure)
        .push_bind(c.replica)
        .push_bind(c.until)
        .push_bind(false);
    q.push(
        ") ON CONFLICT (user_id, departure) DO UPDATE SET replica = excluded.replica, until = excluded.until \
         WHERE offboarding_claims.done = ",
    );
    q.push_bind(false);
    q.push(" AND (offboarding_claims.replica = excluded.replica OR offboarding_claims.until < ");
    q.push_bind(c.now);
    q.push(")");
    q
}

/// `SELECT done` (`true`) or, with `finish`, `UPDATE … SET done` of `c`'s departure.
pub fn offboarding_done<'a, DB: Database>(c: &OffboardingClaim<'a>, finish: bool) -> QueryBuilder<'a, DB>
where
    &'a str: Encode<'a, DB> + Type<DB>,
    bool: Encode<'a, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new(if finish {
        "UPDATE offboarding_claims SET done = "
    } else {
        "SELECT done FROM offboarding_claims"
    });
    if finish {
        q.push_bind(true);
    }
    q.push(" WHERE user_id = ");
    q.push_bind(c.user_id);
    q.push(" AND departure = ");
    q.push_bind(c.departure);
    q
}
