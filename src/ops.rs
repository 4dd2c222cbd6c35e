//! The operations listener's routes: `/healthz` (the process serves), `/readyz` (the directory
//! is loaded, the listeners are up, and — with a shared store — the directory is not stale, so a
//! replica cut off from the database leaves the Service while its peers answer), `/metrics`
//! (Prometheus text format).

use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Clone)]
pub struct OpsState {
    pub metrics: Metrics,
    pub ready: Arc<AtomicBool>,
    pub freshness: Arc<crate::freshness::Freshness>,
}

pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(st): State<OpsState>) -> impl IntoResponse {
    if !st.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string());
    }
    // Failing open means still answering: only a fail-closed replica leaves the Service.
    if let Some(age) = st
        .freshness
        .stale_age()
        .filter(|_| st.freshness.when_stale == crate::config::WhenStale::Deny)
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", st.freshness.describe_stale(age)),
        );
    }
    (StatusCode::OK, "ready\n".to_string())
}

async fn metrics(State(st): State<OpsState>) -> impl IntoResponse {
    st.metrics.freshness(&st.freshness);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
}
