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
/// `user` selects what the person asked for *and* what agents did on their behalf
/// ([`DecisionQuery::or_on_behalf_of`]): by SCIM id or userName, that id; by a requester string,
/// the person the log last resolved that requester to (none for `system:` requesters, which
/// delegates and service accounts use for many people).
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
            q.or_on_behalf_of = person_behind(store, &u).await?;
            q.requester = Some(u);
        } else if uuid::Uuid::parse_str(&u).is_ok() {
            q.or_on_behalf_of = Some(u.clone());
            q.user_id = Some(u);
        } else {
            let id = store.user_id_for(&u).await.map_err(Error::Store)?;
            let id = id.ok_or(Error::UnknownUser(u))?;
            q.or_on_behalf_of = Some(id.clone());
            q.user_id = Some(id);
        }
    }
    Ok(q)
}

/// How many of a requester's latest records are read to find the person it named.
const RESOLVE_PAGE: u32 = 100;

/// The SCIM id the latest of `requester`'s recent records resolved it to, for finding what
/// agents did on that person's behalf. `None` for `system:` requesters: a delegate (Argo's
/// server, a controller) acts for many people, and a service account for itself.
async fn person_behind(store: &dyn Store, requester: &str) -> Result<Option<String>, Error> {
    if requester.starts_with("system:") {
        return Ok(None);
    }
    let recent = store
        .query_decisions(&DecisionQuery {
            requester: Some(requester.to_string()),
            limit: RESOLVE_PAGE,
            ..Default::default()
        })
        .await
        .map_err(Error::Store)?;
    Ok(recent.into_iter().find_map(|r| r.user_id))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DecisionRecord;
    use crate::store::embedded::Embedded;

    const ALICE: &str = "2819c223-7f76-453a-919d-413861904646";
    const BOT: &str = "6c5bb468-14b2-4183-baf2-06d523e03bd3";

    fn record(id: &str, requester: &str, user_id: Option<&str>, on_behalf_of: Option<&str>) -> DecisionRecord {
        DecisionRecord {
            id: id.into(),
            at: format!("2026-12-03T07:00:00.{}Z", &id[2..]),
            action: "submit".into(),
            requester: requester.into(),
            user_id: user_id.map(String::from),
            outcome: "allowed".into(),
            on_behalf_of: on_behalf_of.map(String::from),
            ..Default::default()
        }
    }

    /// alice's own run, her agent's on her behalf, bob's own, the agent's on bob's behalf, and
    /// the Argo Server acting for alice as a delegate.
    fn log() -> Vec<DecisionRecord> {
        vec![
            record("d-001", "oidc:alice@example.com", Some(ALICE), None),
            record("d-002", "oidc:pipeline-bot", Some(BOT), Some(ALICE)),
            record("d-003", "oidc:bob@example.com", Some("u-bob"), None),
            record("d-004", "oidc:pipeline-bot", Some(BOT), Some("u-bob")),
            record("d-005", "system:serviceaccount:argo:argo-server", Some(ALICE), None),
        ]
    }

    async fn ids(store: &dyn Store, user: &str) -> Vec<String> {
        let q = to_query(
            store,
            Filters {
                user: Some(user.into()),
                ..Filters::default()
            },
        )
        .await
        .expect("query");
        let mut ids: Vec<String> = store
            .query_decisions(&q)
            .await
            .expect("records")
            .into_iter()
            .map(|r| r.id)
            .collect();
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn a_persons_query_shows_what_agents_did_on_their_behalf() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Embedded::open(dir.path()).await.expect("store");
        store.record_decisions(&log(), &[]).await.expect("record");
        // By SCIM id: what alice asked for, herself or through a delegate, and what her agent
        // did for her; not what it did for bob.
        assert_eq!(ids(&store, ALICE).await, ["d-001", "d-002", "d-005"]);
        // By her requester string: the person the log resolved it to.
        assert_eq!(ids(&store, "oidc:alice@example.com").await, ["d-001", "d-002"]);
        // The agent's own query is everything it did, for whomever.
        assert_eq!(ids(&store, BOT).await, ["d-002", "d-004"]);
        assert_eq!(ids(&store, "oidc:pipeline-bot").await, ["d-002", "d-004"]);
        // A delegate acts for many people: its requester string is matched as it is.
        assert_eq!(ids(&store, "system:serviceaccount:argo:argo-server").await, ["d-005"]);
        // Read back as written.
        let q = DecisionQuery {
            or_on_behalf_of: Some(ALICE.into()),
            ..Default::default()
        };
        let only = store.query_decisions(&q).await.expect("records");
        assert_eq!(only.len(), 1);
        assert_eq!(only[0], log()[1]);
    }

    #[tokio::test]
    async fn a_user_name_is_resolved_to_the_id_agents_record() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Embedded::open(dir.path()).await.expect("store");
        let alice = crate::store::Record {
            rt: crate::model::ResourceType::User,
            id: ALICE.into(),
            unique_key: "alice@example.com".into(),
            version: 1,
            body: serde_json::json!({"id": ALICE, "userName": "alice@example.com", "active": true})
                .to_string()
                .into(),
        };
        store
            .commit_with(0, &mut |_| {
                vec![crate::store::Change::Put {
                    record: alice.clone(),
                    previous: None,
                }]
            })
            .await
            .expect("commit");
        store.record_decisions(&log(), &[]).await.expect("record");
        assert_eq!(ids(&store, "alice@example.com").await, ["d-001", "d-002", "d-005"]);
        // With another filter, both sides are narrowed alike.
        let q = to_query(
            &store,
            Filters {
                user: Some("alice@example.com".into()),
                namespace: Some("elsewhere".into()),
                ..Filters::default()
            },
        )
        .await
        .expect("query");
        assert!(store.query_decisions(&q).await.expect("records").is_empty());
    }
}
