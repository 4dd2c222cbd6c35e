//! HTTP for the admission webhooks: `POST /mutate`, `POST /validate`. A body that is not an
//! AdmissionReview gets a plain 400, as the API server expects; everything else gets an
//! AdmissionReview answer echoing the request uid.

use super::{codec, decide_traced, owner_lookup, AdmissionState, DecisionDraft, Hook};
use crate::audit::DecisionRecord;
use crate::listener::Caller;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Extension;
use axum::Router;
use std::time::Instant;

/// AdmissionReviews carry the object twice on UPDATE; Kubernetes objects reach 1.5 MiB.
pub const BODY_LIMIT: usize = 8 * 1024 * 1024;

pub fn router(state: AdmissionState) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn mutate(State(st): State<AdmissionState>, caller: Option<Extension<Caller>>, body: Bytes) -> Response {
    handle(&st, &body, Hook::Mutate, authenticated(caller)).await
}

async fn validate(State(st): State<AdmissionState>, caller: Option<Extension<Caller>>, body: Bytes) -> Response {
    handle(&st, &body, Hook::Validate, authenticated(caller)).await
}

/// The caller proved to be the API server: a client certificate the listener verified.
fn authenticated(caller: Option<Extension<Caller>>) -> bool {
    caller.is_some_and(|Extension(c)| c.client_certificate)
}

async fn handle(st: &AdmissionState, body: &[u8], hook: Hook, authenticated: bool) -> Response {
    let started = Instant::now();
    let review = match codec::decode(body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("scimgate: {e}\n")).into_response(),
    };
    let mut trace = DecisionDraft::default();
    let answer = match &review.request {
        Ok(req) => {
            // The one wait on the admission path: the owner of a controller-created run, from
            // the watch cache (a GET only on a miss).
            let owner = owner_lookup(&st.decider, &st.owners, req).await;
            decide_traced(&st.decider, req, &owner, hook, &mut trace)
        }
        Err(why) => codec::Answer::deny(format!("scimgate: malformed AdmissionReview: {why}")),
    };
    let (kind, ns) = review
        .request
        .as_ref()
        .map(|r| (r.kind.as_str(), r.namespace.as_str()))
        .unwrap_or(("", ""));
    let outcome = match trace.outcome {
        Some(o) => o.as_str(),
        None if answer.allowed => "allowed",
        None => "denied",
    };
    let action = trace.action.map(|a| a.as_str()).unwrap_or("none");
    let hook_name = if hook == Hook::Mutate { "mutate" } else { "validate" };
    st.metrics
        .admission(hook_name, kind, action, outcome, started.elapsed());
    // One record per request: the validating answer is final, and a mutating denial ends the
    // request before validation. `kubectl --dry-run=server` leaves no durable trace.
    let final_answer = hook == Hook::Validate || !answer.allowed;
    if let (Ok(req), Some(action), true) = (&review.request, trace.action, final_answer) {
        if !req.dry_run {
            st.recorder
                .record(record(req, hook, action, trace, started.elapsed(), authenticated))
                .await;
        }
    }
    tracing::debug!(uid = %review.uid, kind, namespace = ns, allowed = answer.allowed, "admission");
    let out = codec::encode(&review.api_version, &review.uid, &answer);
    ([(header::CONTENT_TYPE, "application/json")], out.to_string()).into_response()
}

fn record(
    req: &codec::Request,
    hook: Hook,
    action: crate::policy::Action,
    t: DecisionDraft,
    elapsed: std::time::Duration,
    authenticated: bool,
) -> DecisionRecord {
    DecisionRecord {
        id: t.decision_id,
        at: crate::model::clock::now(),
        request_uid: req.uid.clone(),
        hook: if hook == Hook::Mutate { "mutate" } else { "validate" }.into(),
        kind: t.kind,
        namespace: t.namespace,
        name: t.name,
        action: action.as_str().into(),
        requester: req.user.username.clone(),
        user_id: t.user_id,
        groups: t.groups.join(","),
        rule: t.rule,
        outcome: t.outcome.map(|o| o.as_str()).unwrap_or("denied").into(),
        mode: if t.dry_run_mode { "dry-run" } else { "enforce" }.into(),
        reason: t.reason,
        latency_us: i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX),
        policy: t.policy,
        run_as: t.run_as.join(","),
        templates: t.templates.join(","),
        submitter_id: t.submitter_id,
        stamp_id: t.stamp_id,
        authenticated,
        link: None,
    }
}
