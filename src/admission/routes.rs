//! HTTP for the admission webhooks: `POST /mutate`, `POST /validate`. A body that is not an
//! AdmissionReview gets a plain 400, as the API server expects; everything else gets an
//! AdmissionReview answer echoing the request uid.

use super::{decide, review, AdmissionState, Hook};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
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

async fn mutate(State(st): State<AdmissionState>, body: Bytes) -> Response {
    handle(&st, &body, Hook::Mutate)
}

async fn validate(State(st): State<AdmissionState>, body: Bytes) -> Response {
    handle(&st, &body, Hook::Validate)
}

fn handle(st: &AdmissionState, body: &[u8], hook: Hook) -> Response {
    let started = Instant::now();
    let review = match review::decode(body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("scimgate: {e}\n")).into_response(),
    };
    let answer = match &review.request {
        Ok(req) => decide(st, req, hook),
        Err(why) => review::Answer::deny(format!("scimgate: malformed AdmissionReview: {why}")),
    };
    let (kind, ns) = review
        .request
        .as_ref()
        .map(|r| (r.kind.as_str(), r.namespace.as_str()))
        .unwrap_or(("", ""));
    st.metrics.admission(
        if hook == Hook::Mutate { "mutate" } else { "validate" },
        kind,
        answer.allowed,
        started.elapsed(),
    );
    tracing::debug!(uid = %review.uid, kind, namespace = ns, allowed = answer.allowed, "admission");
    let out = review::encode(&review.api_version, &review.uid, &answer);
    ([(header::CONTENT_TYPE, "application/json")], out.to_string()).into_response()
}
