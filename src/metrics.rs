//! Prometheus metrics. One registry per process, created in `app` and passed through state:
//! no globals, so tests can build as many servers as they like.
//!
//! Every label value is a closed enum or a `&'static str`, never a `String`: each distinct value
//! is a time series held for the life of the process and printed on every scrape, so a value a
//! caller could choose (an HTTP method is any token up to the header limit; a path, a token, a
//! kind in an AdmissionReview anything at all) would let anyone who reaches a port grow memory
//! and `/metrics` without bound. Input is mapped onto these sets where it is read ([`Method::of`],
//! [`Status::of`], the SCIM route, the admission kind), so nothing here can carry it.

use crate::directory::Snapshot;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// An enum of label values, each spelled once (`as_str`).
/// (prometheus-client's derive spells a value as its variant's name, which can't be `.search`
/// or `other`.)
macro_rules! closed_set {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    };
}

closed_set! {
    /// An HTTP method as a label value: the ones SCIM uses, and `other` for the rest (HEAD,
    /// OPTIONS, and any token a client makes up).
    Method {
        Get => "GET",
        Post => "POST",
        Put => "PUT",
        Patch => "PATCH",
        Delete => "DELETE",
        Other => "other",
    }
}

impl Method {
    pub fn of(method: &axum::http::Method) -> Method {
        use axum::http::Method as M;
        match *method {
            M::GET => Method::Get,
            M::POST => Method::Post,
            M::PUT => Method::Put,
            M::PATCH => Method::Patch,
            M::DELETE => Method::Delete,
            _ => Method::Other,
        }
    }
}

closed_set! {
    /// A TLS listener, for the serving certificate's expiry.
    Listener {
        Admission => "admission",
        Scim => "scim",
    }
}

closed_set! {
    /// The SCIM endpoint a request was routed to (`scim::routes` maps the matched route onto
    /// it); `other` for a path no route matched.
    ScimResource {
        Users => "Users",
        Groups => "Groups",
        Agents => "Agents",
        Search => ".search",
        Bulk => "Bulk",
        Me => "Me",
        Schemas => "Schemas",
        ResourceTypes => "ResourceTypes",
        ServiceProviderConfig => "ServiceProviderConfig",
        Other => "other",
    }
}

/// An HTTP status as a label value: the code itself when it is one the SCIM API answers with, its
/// class (`4xx`) otherwise. (A status is the server's choice, but a closed list keeps it so
/// whatever a future handler or library returns.)
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Status(&'static str);

/// The codes the SCIM API answers with, each its own label value.
const STATUSES: [(u16, &str); 18] = [
    (200, "200"),
    (201, "201"),
    (204, "204"),
    (304, "304"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (408, "408"),
    (409, "409"),
    (412, "412"),
    (413, "413"),
    (415, "415"),
    (429, "429"),
    (500, "500"),
    (501, "501"),
    (503, "503"),
];

impl Status {
    pub fn of(status: axum::http::StatusCode) -> Status {
        let code = status.as_u16();
        let listed = STATUSES.iter().find(|(c, _)| *c == code).map(|(_, text)| *text);
        Status(listed.unwrap_or(match code / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            5 => "5xx",
            _ => "other",
        }))
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl EncodeLabelValue for Status {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScimLabels {
    pub method: Method,
    pub resource: ScimResource,
    pub status: Status,
}

/// `kind` is one of the admitted kinds, `other` or empty (no request in the review); `action`
/// an action or `none`; `outcome` a decision outcome (see `admission::routes`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    pub hook: &'static str,
    pub kind: &'static str,
    pub action: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    pub listener: &'static str,
    pub reason: &'static str,
}

/// The one live series of [`Metrics::decision_log_checkpoint`]: this process's replica and the
/// hash its last checkpoint signs.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckpointLabels {
    pub replica: String,
    pub hash: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: Listener,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

struct Inner {
    registry: Registry,
    scim_requests: Family<ScimLabels, Counter>,
    scim_duration: Family<ScimLabels, Histogram>,
    auth: Family<OutcomeLabels, Counter>,
    admission: Family<AdmissionLabels, Histogram>,
    policy_reloads: Family<OutcomeLabels, Counter>,
    handshakes_failed: Family<HandshakeLabels, Counter>,
    cert_expiry: Family<ListenerLabels, Gauge>,
    decisions: Family<OutcomeLabels, Counter>,
    token_refreshes: Family<OutcomeLabels, Counter>,
    tokens_live: Gauge,
    commit_seconds: Histogram,
    commit_batch: Histogram,
    users: Gauge,
    groups: Gauge,
    agents: Gauge,
    generation: Gauge<u64, AtomicU64>,
    last_change: Gauge<f64, AtomicU64>,
    last_sync: Gauge<f64, AtomicU64>,
    age: Gauge<f64, AtomicU64>,
    caught_up: Counter,
    resyncs: Counter,
    checkpoint: Family<CheckpointLabels, Gauge>,
    /// The labels of `checkpoint`'s live series, removed when the next checkpoint replaces it.
    checkpoint_live: std::sync::Mutex<Option<CheckpointLabels>>,
    prune_refused: Family<ReasonLabels, Counter>,
    access: AccessMetrics,
    token_writes: TokenWriteMetrics,
}

/// A token's name, set by an operator with `token create` (a bounded set, and never anything a
/// client sends: a series is made only for a live token a request authenticated with).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub token: String,
}

/// The last SCIM write per live token (`crate::token`), and the names with a series, so a
/// revoked token's series goes.
struct TokenWriteMetrics {
    last_write: Family<TokenLabels, Gauge<f64, AtomicU64>>,
    live: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl TokenWriteMetrics {
    fn register(registry: &mut Registry) -> TokenWriteMetrics {
        let m = TokenWriteMetrics {
            last_write: Family::default(),
            live: std::sync::Mutex::default(),
        };
        registry.register(
            "scim_token_last_write_timestamp_seconds",
            "When each live scim-scope token last made a successful SCIM write (any replica's, once flushed), \
             seconds since the epoch; no series for a token that never wrote",
            m.last_write.clone(),
        );
        m
    }
}

/// `verb` is create, apply or delete; `outcome` ok, taken (the name is another's binding) or
/// failed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccessWriteLabels {
    pub verb: &'static str,
    pub outcome: &'static str,
}

/// The access reconciler's (`crate::access::reconcile`).
struct AccessMetrics {
    bindings: Gauge,
    pending: Gauge,
    holder: Gauge,
    lag: Histogram,
    drift: Counter,
    writes: Family<AccessWriteLabels, Counter>,
}

impl AccessMetrics {
    fn register(registry: &mut Registry) -> AccessMetrics {
        let m = AccessMetrics {
            bindings: Gauge::default(),
            pending: Gauge::default(),
            holder: Gauge::default(),
            lag: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            drift: Counter::default(),
            writes: Family::default(),
        };
        registry.register(
            "access_bindings",
            "RoleBindings and ClusterRoleBindings scimgate manages, as this replica last saw them",
            m.bindings.clone(),
        );
        registry.register(
            "access_pending_changes",
            "Bindings the access policy asks to create, change or delete that are not written (dry-run, or failing)",
            m.pending.clone(),
        );
        registry.register(
            "access_writer",
            "1 while this replica holds the access Lease and writes the bindings",
            m.holder.clone(),
        );
        registry.register(
            "access_reconcile_lag_seconds",
            "From a directory change published on this replica to the binding writes it caused",
            m.lag.clone(),
        );
        registry.register(
            "access_drift_repaired",
            "Managed bindings someone else changed or deleted, put back",
            m.drift.clone(),
        );
        registry.register(
            "access_writes",
            "Binding writes by verb (create, apply, delete) and outcome (ok, taken, failed)",
            m.writes.clone(),
        );
        m
    }
}

#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("scimgate");
        let scim_requests = Family::<ScimLabels, Counter>::default();
        registry.register(
            "scim_requests",
            "SCIM requests by method, resource and status",
            scim_requests.clone(),
        );
        let scim_duration = Family::<ScimLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.5, 14))
        });
        registry.register(
            "scim_request_duration_seconds",
            "SCIM request latency",
            scim_duration.clone(),
        );
        let auth = Family::<OutcomeLabels, Counter>::default();
        registry.register("auth", "Bearer token checks by outcome", auth.clone());
        let admission = Family::<AdmissionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.00005, 2.5, 14))
        });
        registry.register(
            "admission_duration_seconds",
            "Admission decisions by hook, kind, action (none: no action of a person) and outcome",
            admission.clone(),
        );
        let policy_reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy file reloads by outcome (ok, failed)",
            policy_reloads.clone(),
        );
        let handshakes_failed = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "tls_handshakes_failed",
            "TLS handshakes refused or failed, by listener and reason (no-client-certificate, client-certificate-rejected, timeout, other)",
            handshakes_failed.clone(),
        );
        let cert_expiry = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "Unix time the serving certificate a listener presents stops being valid (the earliest notAfter of its \
             chain), set whenever it is loaded or reloaded",
            cert_expiry.clone(),
        );
        let decisions = Family::<OutcomeLabels, Counter>::default();
        // Each outcome's series from the start, at 0: an alert on the first lost or waiting
        // record sees it rise rather than appear.
        for outcome in ["recorded", "backpressure", "lost"] {
            let _ = decisions.get_or_create(&OutcomeLabels { outcome });
        }
        registry.register(
            "decisions",
            "Decision records by outcome: recorded, backpressure (a producer waited), lost",
            decisions.clone(),
        );
        let token_refreshes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "token_refreshes",
            "Re-reads of the token table by outcome (ok, failed)",
            token_refreshes.clone(),
        );
        let tokens_live = Gauge::default();
        registry.register(
            "tokens_live",
            "Live (unrevoked) API tokens the server accepts",
            tokens_live.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.5, 14));
        registry.register(
            "store_commit_duration_seconds",
            "Durable commit latency of identity writes",
            commit_seconds.clone(),
        );
        let commit_batch = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "store_commit_batch_writes",
            "SCIM writes committed per transaction",
            commit_batch.clone(),
        );
        let users = Gauge::default();
        registry.register("directory_users", "Users in the identity directory", users.clone());
        let groups = Gauge::default();
        registry.register("directory_groups", "Groups in the identity directory", groups.clone());
        let agents = Gauge::default();
        registry.register("directory_agents", "Agents in the identity directory", agents.clone());
        let generation = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "directory_generation",
            "Changes applied to the directory since start",
            generation.clone(),
        );
        let last_change = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "directory_last_change_timestamp_seconds",
            "Unix time the directory last changed (age = now - this)",
            last_change.clone(),
        );
        let last_sync = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "directory_last_sync_timestamp_seconds",
            "Unix time the directory last matched the identity store",
            last_sync.clone(),
        );
        let age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "directory_age_seconds",
            "Seconds since the directory last matched the identity store (0 with the embedded store)",
            age.clone(),
        );
        let caught_up = Counter::default();
        registry.register(
            "directory_remote_changes",
            "Resources changed by other replicas and applied to this directory",
            caught_up.clone(),
        );
        let resyncs = Counter::default();
        registry.register(
            "directory_resyncs",
            "Full rebuilds of the directory from the store",
            resyncs.clone(),
        );
        let checkpoint = Family::<CheckpointLabels, Gauge>::default();
        registry.register(
            crate::audit::chain::anchors::METRIC
                .strip_prefix("scimgate_")
                .unwrap_or(crate::audit::chain::anchors::METRIC),
            "This process's last signed decision-log checkpoint: its seq, and the hash it signs as a label (an anchor \
             for audit verify --log --anchors; one series, replaced at each checkpoint)",
            checkpoint.clone(),
        );
        let prune_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "decision_log_prune_refused",
            "Chains retention left uncut or cut short because they do not recompute (broken) or no signed \
             checkpoint vouches for them (unvouched); audit verify --log names them",
            prune_refused.clone(),
        );
        let access = AccessMetrics::register(&mut registry);
        let token_writes = TokenWriteMetrics::register(&mut registry);
        Metrics(Arc::new(Inner {
            access,
            token_writes,
            checkpoint,
            checkpoint_live: std::sync::Mutex::new(None),
            prune_refused,
            last_sync,
            age,
            caught_up,
            resyncs,
            registry,
            scim_requests,
            scim_duration,
            auth,
            admission,
            policy_reloads,
            handshakes_failed,
            cert_expiry,
            decisions,
            token_refreshes,
            tokens_live,
            commit_seconds,
            commit_batch,
            users,
            groups,
            agents,
            generation,
            last_change,
        }))
    }

    /// The access reconciler's view: bindings it manages, changes not written, whether it writes.
    pub fn access_state(&self, bindings: usize, pending: usize, holder: bool) {
        let a = &self.0.access;
        a.bindings.set(bindings as i64);
        a.pending.set(pending as i64);
        a.holder.set(i64::from(holder));
    }

    pub fn access_write(&self, verb: &'static str, outcome: &'static str) {
        self.0
            .access
            .writes
            .get_or_create(&AccessWriteLabels { verb, outcome })
            .inc();
    }

    pub fn access_lag(&self, lag: Duration) {
        self.0.access.lag.observe(lag.as_secs_f64());
    }

    pub fn access_drift_repaired(&self) {
        self.0.access.drift.inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.0.registry).is_err() {
            out.clear();
        }
        out
    }

    pub fn scim_request(&self, method: Method, resource: ScimResource, status: Status, elapsed: Duration) {
        let labels = ScimLabels {
            method,
            resource,
            status,
        };
        self.0.scim_requests.get_or_create(&labels).inc();
        self.0
            .scim_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    pub fn auth(&self, outcome: &'static str) {
        self.0.auth.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn admission(
        &self,
        hook: &'static str,
        kind: &'static str,
        action: &'static str,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        let labels = AdmissionLabels {
            hook,
            kind,
            action,
            outcome,
        };
        self.0.admission.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    pub fn handshake_failed(&self, listener: &'static str, reason: &'static str) {
        self.0
            .handshakes_failed
            .get_or_create(&HandshakeLabels { listener, reason })
            .inc();
    }

    /// The serving certificate `listener` presents now expires at `not_after` (Unix seconds).
    pub fn tls_certificate_expiry(&self, listener: Listener, not_after: i64) {
        self.0
            .cert_expiry
            .get_or_create(&ListenerLabels { listener })
            .set(not_after);
    }

    pub fn policy_reload(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.0.policy_reloads.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn decisions_recorded(&self, n: usize) {
        self.0
            .decisions
            .get_or_create(&OutcomeLabels { outcome: "recorded" })
            .inc_by(n as u64);
    }

    pub fn decision_backpressure(&self) {
        self.0
            .decisions
            .get_or_create(&OutcomeLabels {
                outcome: "backpressure",
            })
            .inc();
    }

    pub fn decisions_lost(&self, n: usize) {
        self.0
            .decisions
            .get_or_create(&OutcomeLabels { outcome: "lost" })
            .inc_by(n as u64);
    }

    pub fn token_refresh(&self, ok: bool, live: usize) {
        let outcome = if ok { "ok" } else { "failed" };
        self.0.token_refreshes.get_or_create(&OutcomeLabels { outcome }).inc();
        self.0.tokens_live.set(i64::try_from(live).unwrap_or(i64::MAX));
    }

    /// The last-write series: one per `(token name, seconds since the epoch)` given; the series
    /// of a name not given (a revoked token) removed.
    pub fn token_last_writes(&self, writes: &[(String, f64)]) {
        let m = &self.0.token_writes;
        let mut live = m.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (token, at) in writes {
            m.last_write
                .get_or_create(&TokenLabels { token: token.clone() })
                .set(*at);
        }
        live.retain(|token| {
            let kept = writes.iter().any(|(t, _)| t == token);
            if !kept {
                m.last_write.remove(&TokenLabels { token: token.clone() });
            }
            kept
        });
        live.extend(writes.iter().map(|(t, _)| t.clone()));
    }

    pub fn store_commit(&self, elapsed: Duration, writes: usize) {
        self.0.commit_seconds.observe(elapsed.as_secs_f64());
        self.0.commit_batch.observe(writes as f64);
    }

    pub fn directory(&self, s: &Snapshot) {
        self.0.users.set(i64::try_from(s.user_count()).unwrap_or(i64::MAX));
        self.0.groups.set(i64::try_from(s.group_count()).unwrap_or(i64::MAX));
        self.0
            .agents
            .set(i64::try_from(s.count(crate::model::ResourceType::Agent)).unwrap_or(i64::MAX));
        self.0.generation.set(s.generation);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.0.last_change.set(now);
    }

    pub fn directory_caught_up(&self, resources: usize) {
        self.0.caught_up.inc_by(resources as u64);
    }

    pub fn directory_resync(&self) {
        self.0.resyncs.inc();
    }

    /// This process's last checkpoint, as an anchor: one live series, whose `hash` label changes
    /// with each checkpoint, so the previous series is removed rather than left to accumulate.
    pub fn decision_log_checkpoint(&self, replica: &str, seq: i64, hash: &str) {
        let labels = CheckpointLabels {
            replica: replica.into(),
            hash: hash.into(),
        };
        // The new series first: a scrape in between sees two true anchors rather than none.
        self.0.checkpoint.get_or_create(&labels).set(seq);
        if let Ok(mut live) = self.0.checkpoint_live.lock() {
            if let Some(old) = live.replace(labels.clone()) {
                if old != labels {
                    self.0.checkpoint.remove(&old);
                }
            }
        }
    }

    pub fn decision_log_prune_refused(&self, reason: crate::audit::chain::Refusal) {
        self.0
            .prune_refused
            .get_or_create(&ReasonLabels {
                reason: reason.as_str().into(),
            })
            .inc();
    }

    /// Set at scrape time: the age moves on by itself.
    pub fn freshness(&self, f: &crate::freshness::Freshness) {
        self.0.last_sync.set(f.last_sync_unix());
        self.0.age.set(f.age().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn methods_map_onto_their_closed_set() {
        use axum::http::Method as M;
        for (m, label) in [
            (M::GET, "GET"),
            (M::POST, "POST"),
            (M::PUT, "PUT"),
            (M::PATCH, "PATCH"),
            (M::DELETE, "DELETE"),
            (M::HEAD, "other"),
            (M::OPTIONS, "other"),
        ] {
            assert_eq!(Method::of(&m).as_str(), label);
        }
        let odd = M::from_bytes("X".repeat(300 * 1024).as_bytes()).expect("a method is any token");
        assert_eq!(Method::of(&odd), Method::Other);
    }

    /// Every method and every status a response can carry: the SCIM series stay within the
    /// product of the closed sets, and no input shows in the exposition.
    #[test]
    fn a_flood_of_odd_methods_and_statuses_adds_a_bounded_number_of_series() {
        let m = Metrics::new();
        for code in 100..1000u16 {
            let method = axum::http::Method::from_bytes(format!("FLOOD{code}").as_bytes()).expect("method");
            let status = StatusCode::from_u16(code).expect("status");
            m.scim_request(
                Method::of(&method),
                ScimResource::Other,
                Status::of(status),
                Duration::ZERO,
            );
        }
        let statuses: std::collections::HashSet<Status> = (100..1000u16)
            .filter_map(|c| StatusCode::from_u16(c).ok())
            .map(Status::of)
            .collect();
        assert!(statuses.len() < 30, "{statuses:?}");
        let text = m.encode();
        let series = text
            .lines()
            .filter(|l| l.starts_with("scimgate_scim_requests_total{"))
            .count();
        assert_eq!(series, statuses.len(), "{text}");
        assert!(!text.contains("FLOOD"), "{text}");
        assert!(
            text.contains(r#"{method="other",resource="other",status="404"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#"{method="other",resource="other",status="4xx"}"#),
            "{text}"
        );
    }

    #[test]
    fn the_checkpoint_metric_keeps_one_series_whatever_the_hashes() {
        let m = Metrics::new();
        for (seq, hash) in [(1000, "aa11"), (2000, "bb22"), (2500, "cc33")] {
            m.decision_log_checkpoint("host-0a1b2c3d", seq, hash);
        }
        let text = m.encode();
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(crate::audit::chain::anchors::METRIC))
            .collect();
        assert_eq!(
            series,
            vec![r#"scimgate_decision_log_checkpoint{replica="host-0a1b2c3d",hash="cc33"} 2500"#]
        );
    }
}
