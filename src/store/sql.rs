//! SQL both backends share, written once over `sqlx::Database`: the decision-log columns, the
//! audit-query filters and the row mapping. Only placeholders and a few statements differ between
//! SQLite and PostgreSQL, and `QueryBuilder` writes the placeholders.

use super::Result;
use crate::audit::query::{DecisionQuery, DEFAULT_LIMIT, MAX_LIMIT};
use crate::audit::DecisionRecord;
use sqlx::{Database, Encode, QueryBuilder, Row, Type};

pub const DECISION_COLUMNS: &str = "id, at, request_uid, hook, kind, namespace, name, action, requester, user_id, \
     groups, rule, outcome, mode, reason, latency_us, policy, run_as, templates, submitter_id";

/// `VALUES (…), (…)` for `records`, in [`DECISION_COLUMNS`] order.
pub fn push_decision_values<'a, DB: Database>(b: &mut QueryBuilder<'a, DB>, records: &'a [DecisionRecord])
where
    String: Encode<'a, DB> + Type<DB>,
    Option<String>: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    b.push_values(records, |mut v, r| {
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
            .push_bind(&r.submitter_id);
    });
}

/// `SELECT … FROM decisions WHERE …` for `q`, newest first, limited.
pub fn decision_query<'a, DB: Database>(q: &DecisionQuery) -> QueryBuilder<'a, DB>
where
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut b = QueryBuilder::<DB>::new(format!("SELECT {DECISION_COLUMNS} FROM decisions WHERE 1 = 1"));
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
{
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
    })
}
