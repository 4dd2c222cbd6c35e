//! `GET /api/v1/decisions`: the decision log over HTTPS for `scimgate audit query --url`, with
//! an `audit`-scoped token (a `scim` token gets 403, as an `audit` token does on SCIM).

use super::query::{self, DecisionQuery, Filters};
use crate::store::{Scope, Store};
use crate::token::{Denied, Tokens};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

#[derive(Clone)]
pub struct AuditState {
    pub store: Arc<dyn Store>,
    pub tokens: Tokens,
}

pub fn router(state: AuditState) -> Router {
    Router::new().route("/decisions", get(decisions)).with_state(state)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({"error": msg.into()}))).into_response()
}

/// Why filters do not make a query: the person's mistake (HTTP 400), or the store's (503).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("give --since or --from, not both")]
    SinceAndFrom,
    #[error("{0}")]
    Time(String),
    #[error("no SCIM user named '{0}' (now or deleted)")]
    UnknownUser(String),
    #[error("the identity store: {0}")]
    Store(crate::store::Error),
}

/// Turn the filter names into a query; userNames are resolved to SCIM ids (deleted users too).
pub async fn to_query(store: &dyn Store, p: Filters) -> Result<DecisionQuery, Error> {
    let now = chrono::Utc::now();
    let mut q = DecisionQuery {
        group: p.group,
        namespace: p.namespace,
        name: p.name,
        kind: p.kind.map(|k| k.as_str().to_string()),
        action: p.action.map(|a| a.as_str().to_string()),
        outcome: p.outcome.map(|o| o.as_str().to_string()),
        rule: p.rule,
        after: p.after,
        limit: p.limit.unwrap_or(query::DEFAULT_LIMIT),
        ..Default::default()
    };
    q.from = match (p.since, p.from) {
        (Some(_), Some(_)) => return Err(Error::SinceAndFrom),
        (Some(s), None) | (None, Some(s)) => Some(query::parse_time(&s, now).map_err(Error::Time)?),
        (None, None) => None,
    };
    q.to =
        p.to.map(|t| query::parse_time(&t, now))
            .transpose()
            .map_err(Error::Time)?;
    if let Some(u) = p.user {
        if u.contains(':') {
            q.requester = Some(u);
        } else if uuid::Uuid::parse_str(&u).is_ok() {
            q.user_id = Some(u);
        } else {
            let id = store.user_id_for(&u).await.map_err(Error::Store)?;
            q.user_id = Some(id.ok_or(Error::UnknownUser(u))?);
        }
    }
    Ok(q)
}

async fn decisions(
    State(st): State<AuditState>,
    headers: axum::http::HeaderMap,
    params: Result<Query<Filters>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    match presented.map(|t| st.tokens.check(t, Scope::Audit)) {
        None => {
            return error(
                StatusCode::UNAUTHORIZED,
                "a bearer token with scope 'audit' is required",
            )
        }
        Some(Err(Denied::Unknown)) => return error(StatusCode::UNAUTHORIZED, "the bearer token is unknown or revoked"),
        Some(Err(Denied::Scope(s))) => {
            return error(
                StatusCode::FORBIDDEN,
                format!("this token has scope '{}'; the audit API needs 'audit'", s.as_str()),
            )
        }
        Some(Ok(_)) => {}
    }
    let Query(params) = match params {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let q = match to_query(&*st.store, params).await {
        Ok(q) => q,
        Err(e @ Error::Store(_)) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match st.store.query_decisions(&q).await {
        Ok(records) => {
            let limit = if q.limit == 0 {
                query::DEFAULT_LIMIT
            } else {
                q.limit.min(query::MAX_LIMIT)
            };
            let next = (records.len() as u32 == limit)
                .then(|| records.last().map(|r| r.id.clone()))
                .flatten();
            Json(json!({"items": records.iter().map(query::to_json).collect::<Vec<_>>(), "next": next})).into_response()
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the decision log is unavailable: {e}"),
        ),
    }
}
