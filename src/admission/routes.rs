//! HTTP for the admission webhooks: `POST /mutate`, `POST /validate`. A body that is not an
//! AdmissionReview gets a plain 400, as the API server expects; everything else gets an
//! AdmissionReview answer echoing the request uid. Also owns what a review may cost before it is
//! judged: the body cap, the decode budget and the shape pre-check (`codec::shape`).

use super::{codec, decide_traced, lookups, AdmissionState, DecisionDraft, Hook};
use crate::audit::DecisionRecord;
use crate::listener::{BodyTimeout, Caller};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Extension;
use axum::Router;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The largest AdmissionReview we read. kube-apiserver reads at most 3 MiB of a write's body
/// (`MaxRequestBodyBytes`, k8s.io/apiserver pkg/server/config.go, not a flag), so `object` is at
/// most the object decoded from 3 MiB; `oldObject` is what storage holds, and a custom resource is
/// stored as this same JSON under etcd's request limit (1.5 MiB by default), so a write whose review
/// outgrows 2 × 3 MiB could not be stored anyway. 256 KiB on top for the envelope (userInfo with
/// its groups and extra, options, uid, kinds).
pub const BODY_LIMIT: usize = 6 * 1024 * 1024 + 256 * 1024;

/// Bytes that reviews being read and decoded may hold at once: every body byte as it arrives,
/// then the decoded tree (estimated from the pre-check's count of values). One worst-case review
/// ([`BODY_LIMIT`] bytes, [`codec::MAX_TOKENS`] values) takes about 80 MB of it, a real one a few
/// KiB to a few hundred KiB, so a flood of hostile bodies is turned away (429) while real ones pass.
pub const DECODE_BUDGET: usize = 128 * 1024 * 1024;

/// What one decoded JSON value costs, estimated: a `serde_json::Value` is 80 bytes with the
/// preserve_order maps, plus the growth slack of the vector or map holding it (a pre-check
/// token is a value or a key). Not measured per value; bench/hostile.sh's `dense` kind (520k
/// values, decoded 50 at a time) shows the whole stays inside the budget's ceiling.
const TOKEN_COST: usize = 128;

/// How long a fully read review waits for the budget its decoded tree needs before it is turned away with 429 and `Retry-After: 1`:
/// kube-apiserver's webhook client (client-go `rest.Request`, `checkWait`) retries a 429 that
/// carries Retry-After within the webhook's timeout, so a burst is absorbed instead of failing
/// writes under `failurePolicy: Fail`; waiting longer would only eat that timeout.
const BUDGET_WAIT: Duration = Duration::from_secs(2);

/// Bodies larger than this are decoded and judged off the async workers, one at a time
/// ([`Heavy`]). Real reviews are a few KiB to a few tens of KiB (the corpus captures); every step
/// is linear in the body, but a 6 MiB body still takes tens of milliseconds of CPU, which must not
/// sit on a worker that `/healthz` and small reviews need.
pub const HEAVY_BODY: usize = 128 * 1024;

/// The decode budget shared by both webhooks of a listener.
#[derive(Clone)]
struct Budget(Arc<Semaphore>);

/// Work on heavy bodies: on the blocking pool, at most this many at once, so the other cores
/// stay free for everything else (the OS shares a core fairly between threads; queued heavy
/// work waits without holding a thread).
#[derive(Clone)]
struct Heavy(Arc<Semaphore>);

impl Heavy {
    fn new() -> Heavy {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Heavy(Arc::new(Semaphore::new((cores / 2).max(1))))
    }

    /// `f` on the blocking pool once a permit is free; `None` if it could not run to the end.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let _permit = self.0.acquire().await.ok()?;
        tokio::task::spawn_blocking(f).await.ok()
    }
}

pub fn router(state: AdmissionState) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .layer(Extension(Budget(Arc::new(Semaphore::new(DECODE_BUDGET)))))
        .layer(Extension(Heavy::new()))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn mutate(
    State(st): State<AdmissionState>,
    Extension(budget): Extension<Budget>,
    Extension(heavy): Extension<Heavy>,
    caller: Option<Extension<Caller>>,
    req: Request,
) -> Response {
    admit(&st, &budget, &heavy, req, Hook::Mutate, authenticated(caller)).await
}

async fn validate(
    State(st): State<AdmissionState>,
    Extension(budget): Extension<Budget>,
    Extension(heavy): Extension<Heavy>,
    caller: Option<Extension<Caller>>,
    req: Request,
) -> Response {
    admit(&st, &budget, &heavy, req, Hook::Validate, authenticated(caller)).await
}

/// The caller proved to be the API server: a client certificate the listener verified.
fn authenticated(caller: Option<Extension<Caller>>) -> bool {
    caller.is_some_and(|Extension(c)| c.client_certificate)
}

/// Why a body is not judged at all (a plain-text HTTP error, as the API server expects for what is
/// not an AdmissionReview it can use).
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error(
        "the AdmissionReview is larger than {BODY_LIMIT} bytes (kube-apiserver accepts writes of at most 3 MiB; \
         see BODY_LIMIT in src/admission/routes.rs)"
    )]
    TooLarge,
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("reading the request body failed")]
    BodyRead,
    #[error("too many AdmissionReviews being read and decoded at once; retry")]
    Busy,
    #[error("judging the AdmissionReview did not complete")]
    Internal,
    #[error(transparent)]
    Shape(#[from] codec::Error),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let status = match &self {
            Refused::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refused::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Refused::BodyRead | Refused::Shape(_) => StatusCode::BAD_REQUEST,
            Refused::Busy => StatusCode::TOO_MANY_REQUESTS,
            Refused::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let text = format!("scimgate: {self}\n");
        if matches!(self, Refused::Busy) {
            return (status, [(header::RETRY_AFTER, "1")], text).into_response();
        }
        (status, text).into_response()
    }
}

/// Read the body within the budget, check its shape, then judge it; the budget is held until the
/// answer is made (the decoded objects live that long).
async fn admit(
    st: &AdmissionState,
    budget: &Budget,
    heavy: &Heavy,
    req: Request,
    hook: Hook,
    authenticated: bool,
) -> Response {
    let (body, held) = match bounded_body(budget, req).await {
        Ok(b) => b,
        Err(refused) => return refused.into_response(),
    };
    let heavy = (body.len() > HEAVY_BODY).then_some(heavy);
    let response = handle(st, body, hook, authenticated, heavy).await;
    drop(held);
    response
}

/// The body and the budget it and its decoded tree hold.
async fn bounded_body(budget: &Budget, req: Request) -> Result<(Vec<u8>, OwnedSemaphorePermit), Refused> {
    let (body, mut held) = read_body(budget, req).await?;
    let shape = codec::shape(&body)?;
    // The decoded tree: its values, and the strings copied out of the body.
    let tree = shape.tokens.saturating_mul(TOKEN_COST).saturating_add(body.len());
    held.merge(take(budget, tree).await?);
    Ok((body, held))
}

/// `n` bytes of the budget, waiting at most [`BUDGET_WAIT`].
async fn take(budget: &Budget, n: usize) -> Result<OwnedSemaphorePermit, Refused> {
    let n = match u32::try_from(n) {
        Ok(n) if (n as usize) <= DECODE_BUDGET => n,
        _ => return Err(Refused::TooLarge),
    };
    match tokio::time::timeout(BUDGET_WAIT, budget.0.clone().acquire_many_owned(n)).await {
        Ok(Ok(p)) => Ok(p),
        // Closed never happens (nothing closes it); answer as for a full budget.
        Ok(Err(_)) | Err(_) => Err(Refused::Busy),
    }
}

/// The body, at most [`BODY_LIMIT`] bytes, read into one buffer whose every byte of capacity is
/// counted against the budget as it grows (never on the word of Content-Length: a trickling body
/// holds only what it has sent). Reading never waits for budget — a body that finds none is
/// answered 429 at once — so bodies half-read cannot wait on each other. Refused before reading
/// when Content-Length says it is too large, and as soon as it grows past the cap otherwise.
async fn read_body(budget: &Budget, req: Request) -> Result<(Vec<u8>, OwnedSemaphorePermit), Refused> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT) {
        return Err(Refused::TooLarge);
    }
    let mut held = take_now(budget, 0)?;
    let mut body: Vec<u8> = Vec::new();
    let mut incoming = req.into_body();
    while let Some(frame) = incoming.frame().await {
        let frame = match frame {
            Ok(f) => f,
            // The listener's body-read deadline (it answers for every route; here we say so).
            Err(e) if std::error::Error::source(&e).is_some_and(|c| c.is::<BodyTimeout>()) => {
                return Err(Refused::BodyTimeout)
            }
            Err(_) => return Err(Refused::BodyRead),
        };
        let Ok(data) = frame.into_data() else { continue };
        let len = body.len() + data.len();
        if len > BODY_LIMIT {
            return Err(Refused::TooLarge);
        }
        if len > body.capacity() {
            // Double (amortised copies), but never past the declared length or the cap.
            let ceiling = declared.filter(|d| *d >= len).unwrap_or(BODY_LIMIT);
            let grown = (body.capacity() * 2).clamp(len, ceiling);
            held.merge(take_now(budget, grown - body.capacity())?);
            body.reserve_exact(grown - body.len());
        }
        body.extend_from_slice(&data);
    }
    Ok((body, held))
}

/// `n` bytes of the budget now, or 429.
fn take_now(budget: &Budget, n: usize) -> Result<OwnedSemaphorePermit, Refused> {
    u32::try_from(n)
        .ok()
        .and_then(|n| budget.0.clone().try_acquire_many_owned(n).ok())
        .ok_or(Refused::Busy)
}

/// Decode and judge one body — on the worker for a small one, through [`Heavy`] for a heavy one.
async fn handle(
    st: &AdmissionState,
    body: Vec<u8>,
    hook: Hook,
    authenticated: bool,
    heavy: Option<&Heavy>,
) -> Response {
    let started = Instant::now();
    // The tree owns its strings: the body goes before the (possibly waiting) owner lookup.
    let decoded = match heavy {
        Some(h) => h.run(move || codec::decode(&body)).await,
        None => Some(codec::decode(&body)),
    };
    let review = match decoded {
        Some(Ok(r)) => r,
        Some(Err(e)) => return Refused::Shape(e).into_response(),
        None => return Refused::Internal.into_response(),
    };
    let (review, answer, mut trace) = match review.request {
        Ok(req) => {
            // The one wait on the admission path: the owner of a controller-created run, from
            // the watch cache (a GET only on a miss).
            let found = lookups(&st.decider, &st.owners, &req).await;
            let decide = {
                let decider = st.decider.clone();
                move || {
                    let mut trace = DecisionDraft {
                        authenticated,
                        ..DecisionDraft::default()
                    };
                    let answer = decide_traced(&decider, &req, &found, hook, &mut trace);
                    (req, answer, trace)
                }
            };
            let decided = match heavy {
                Some(h) => h.run(decide).await,
                None => Some(decide()),
            };
            let Some((req, answer, trace)) = decided else {
                return Refused::Internal.into_response();
            };
            let review = codec::Review {
                request: Ok(req),
                ..review
            };
            (review, answer, trace)
        }
        Err(why) => {
            let answer = codec::Answer::deny(format!("scimgate: malformed AdmissionReview: {why}"));
            let review = codec::Review {
                request: Err(why),
                ..review
            };
            (review, answer, DecisionDraft::default())
        }
    };
    // The metric's kind label is one of ours or `other`: anything a caller sends as the kind
    // would otherwise make a new time series.
    let (kind, ns) = review
        .request
        .as_ref()
        .map(|r| {
            let kind = super::pipeline_run::detect(&r.group, &r.version, &r.kind).map_or("other", |k| k.as_str());
            (kind, r.namespace.as_str())
        })
        .unwrap_or(("", ""));
    let outcome = match trace.outcome {
        Some(o) => o.as_str(),
        None if answer.allowed => "allowed",
        None => "denied",
    };
    let action = trace.own_action.or(trace.action.map(|a| a.as_str())).unwrap_or("none");
    let hook_name = if hook == Hook::Mutate { "mutate" } else { "validate" };
    st.metrics
        .admission(hook_name, kind, action, outcome, started.elapsed());
    // One record per request: the validating answer is final, and a mutating denial ends the
    // request before validation. `kubectl --dry-run=server` leaves no durable trace.
    let final_answer = hook == Hook::Validate || !answer.allowed;
    if let (Ok(req), Some(action), true) = (
        &review.request,
        trace.own_action.or(trace.action.map(|a| a.as_str())),
        final_answer,
    ) {
        if !req.dry_run {
            // One record per action the request contains (an approval that also changes the
            // spec is both): the further ones with their own decision id, rule and stamp.
            let also = std::mem::take(&mut trace.also);
            for a in &also {
                let mut t = trace.clone();
                t.decision_id = a.decision_id.clone();
                t.rule = a.rule.clone();
                t.stamp_id = a.stamp_id.clone();
                st.recorder
                    .record(record(
                        req,
                        hook,
                        a.action.as_str(),
                        t,
                        started.elapsed(),
                        authenticated,
                    ))
                    .await;
            }
            st.recorder
                .record(record(req, hook, action, trace, started.elapsed(), authenticated))
                .await;
        }
    }
    // The uid and namespace are the caller's to choose (and, without caller authentication,
    // anyone's): bounded, so a log line doesn't grow with them.
    tracing::debug!(
        uid = %crate::telemetry::field(&review.uid),
        kind,
        namespace = %crate::telemetry::field(ns),
        allowed = answer.allowed,
        "admission"
    );
    let out = codec::encode(&review.api_version, &review.uid, &answer);
    ([(header::CONTENT_TYPE, "application/json")], out.to_string()).into_response()
}

/// The decision whose stamp for `action` the stored object carried before this write.
fn prior_decision(req: &codec::Request, action: &str) -> Option<String> {
    let action = crate::policy::Action::ALL.into_iter().find(|a| a.as_str() == action)?;
    let entry = crate::stamp::vocabulary::Entry::of(action)?;
    let old = req.old_object.as_ref()?;
    crate::stamp::object::metadata_map(old, "annotations")?
        .get(&entry.decision_key())?
        .as_str()
        .map(String::from)
}

fn record(
    req: &codec::Request,
    hook: Hook,
    action: &str,
    t: DecisionDraft,
    elapsed: std::time::Duration,
    authenticated: bool,
) -> DecisionRecord {
    // An agent's: whose rights carried this action, or whom it acted for when none did.
    let on_behalf_of = action
        .parse::<crate::policy::Action>()
        .ok()
        .and_then(|a| t.carried_by(a))
        .map(|by| by.id.clone())
        .or_else(|| t.acting_for.clone());
    DecisionRecord {
        id: t.decision_id,
        at: crate::model::clock::now(),
        request_uid: req.uid.clone(),
        hook: if hook == Hook::Mutate { "mutate" } else { "validate" }.into(),
        kind: t.kind,
        namespace: t.namespace,
        name: t.name,
        action: action.into(),
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
        prior_decision: prior_decision(req, action),
        on_behalf_of,
        link: None,
    }
}
