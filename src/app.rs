//! `serve`'s wiring: builds the state from a validated `Config`, binds and serves the listeners,
//! runs the background tasks (token refresh, certificate and policy reload, retention), and shuts
//! all of it down gracefully on SIGTERM/SIGINT. Holds no protocol logic and no other command
//! (those are in `cmd`).

use crate::admission::{self, AdmissionState, Decider};
use crate::audit::recorder::Recorder;
use crate::cluster::argo_defaults::{ArgoDefaults, Defaults};
use crate::cluster::owners::Owners;
use crate::config::Config;
use crate::directory::Snapshot;
use crate::freshness::Freshness;
use crate::metrics::Metrics;
use crate::ops::{self, OpsState};
use crate::policy::{self, Policy};
use crate::scim::routes::{self, ScimState, BASE_PATH};
use crate::scim::service::Service;
use crate::stamp::{Signer, Verifier};
use crate::store::{Scope, Store};
use crate::token::{self, Tokens};
use crate::writer::Writer;
use crate::{listener, telemetry, tls};
use anyhow::Context;
use arc_swap::ArcSwap;
use axum::Router;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The operations listener's connection cap (probes, scrapes).
const OPS_MAX_CONNECTIONS: usize = 256;
/// Descriptors kept for everything but client connections (store, logs, certificates, the
/// Kubernetes client).
const RESERVED_FDS: usize = 256;

/// `scimgate serve`: bind the configured listeners, run until SIGTERM/SIGINT, shut down.
pub async fn serve(args: &crate::cli::ServeArgs) -> anyhow::Result<()> {
    let cfg = Config::from_args(args)?;
    telemetry::init(cfg.log_format);
    let admission_listener = TcpListener::bind(cfg.admission_addr)
        .await
        .with_context(|| format!("binding admission listener {}", cfg.admission_addr))?;
    let scim = TcpListener::bind(cfg.scim_addr)
        .await
        .with_context(|| format!("binding SCIM listener {}", cfg.scim_addr))?;
    let ops = TcpListener::bind(cfg.ops_addr)
        .await
        .with_context(|| format!("binding operations listener {}", cfg.ops_addr))?;
    let server = start(
        cfg,
        Listeners {
            admission: admission_listener,
            scim,
            ops,
        },
    )
    .await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.stop().await;
    Ok(())
}

/// Already-bound listeners: `serve` binds the configured addresses, tests bind `127.0.0.1:0`.
pub struct Listeners {
    pub admission: TcpListener,
    pub scim: TcpListener,
    pub ops: TcpListener,
}

/// A started server.
pub struct Server {
    pub admission_addr: SocketAddr,
    pub scim_addr: SocketAddr,
    pub ops_addr: SocketAddr,
    /// The SCIM token `--dev` created, if any.
    pub dev_token: Option<String>,
    /// The CA that signed the serving certificate, when we generated it.
    pub dev_ca: Option<PathBuf>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// Ends once the admission listener is gone and every queued decision is written.
    recorder: tokio::task::JoinHandle<()>,
    /// Their last use is written once more after the listeners have drained.
    tokens: (Tokens, Arc<dyn Store>),
}

impl Server {
    /// Stop accepting, drain in-flight requests, end background tasks.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        // The token refresh flushed as it ended; this catches the requests drained after.
        self.tokens.0.flush_logged(&*self.tokens.1).await;
        if tokio::time::timeout(listener::DRAIN_TIMEOUT, &mut self.recorder)
            .await
            .is_err()
        {
            tracing::warn!("decision records still queued after the drain timeout");
        }
    }
}

pub async fn start(cfg: Config, listeners: Listeners) -> anyhow::Result<Server> {
    let started = std::time::Instant::now();
    let state = State::load(&cfg).await?;
    let dev_token = dev_token(&cfg, &state).await?;
    let tls = Serving::open(&cfg, &state.metrics)?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    background(&cfg, &state, &tls, &mut tasks, &shutdown_rx);
    let tokens = (state.tokens.clone(), state.store.clone());
    let cluster = Cluster::read(&cfg, &mut tasks, &shutdown_rx).await?;
    let apps = Apps::build(&cfg, state, cluster, &mut tasks, &shutdown_rx).await?;
    let dev_ca = tls.dev_ca.clone();
    let addrs = serve_listeners(&cfg, listeners, tls, apps.routers, &mut tasks, shutdown_rx)?;
    apps.ready.store(true, Ordering::Release);

    let (admission_addr, scim_addr, ops_addr) = addrs;
    tracing::info!(%admission_addr, %scim_addr, %ops_addr, millis = started.elapsed().as_millis() as u64, "scimgate serving");
    if cfg.dev {
        print_dev_banner(
            admission_addr,
            scim_addr,
            dev_token.as_deref(),
            dev_ca.as_deref(),
            &cfg.data_dir,
        );
    }
    Ok(Server {
        recorder: apps.recorder,
        admission_addr,
        scim_addr,
        ops_addr,
        dev_token,
        dev_ca,
        shutdown,
        tasks,
        tokens,
    })
}

/// What the listeners serve from: the store, the directory loaded from it, the policy, the keys
/// and the tokens.
struct State {
    store: Arc<dyn Store>,
    directory: Arc<ArcSwap<Snapshot>>,
    metrics: Metrics,
    freshness: Arc<Freshness>,
    writer: Writer<crate::scim::Error>,
    policy: Arc<ArcSwap<Policy>>,
    signer: Arc<Signer>,
    /// The signing key and those retired by a rotation (keys/retired/), which still verify the
    /// stamps they made.
    verifier: Verifier,
    tokens: Tokens,
}

impl State {
    async fn load(cfg: &Config) -> anyhow::Result<State> {
        let started = std::time::Instant::now();
        let store = crate::store::open(&cfg.store)
            .await
            .with_context(|| format!("opening {}", cfg.store.describe()))?;
        let loaded = store.load().await.context("loading identity state")?;
        let snapshot = Snapshot::from_loaded(loaded);
        let metrics = Metrics::new();
        metrics.directory(&snapshot);
        tracing::info!(
            users = snapshot.user_count(),
            groups = snapshot.group_count(),
            agents = snapshot.count(crate::model::ResourceType::Agent),
            millis = started.elapsed().as_millis() as u64,
            "directory loaded"
        );
        let directory = Arc::new(ArcSwap::from_pointee(snapshot));
        let freshness = Arc::new(Freshness::new(shared_store(cfg), &cfg.replication));
        let writer = Writer::start(store.clone(), directory.clone(), metrics.clone(), freshness.clone());
        let policy = Arc::new(ArcSwap::from_pointee(load_policy(cfg)?));
        let signer = Arc::new(Signer::load_or_create(&cfg.signing_key)?);
        if shared_store(cfg) && cfg.signing_key.starts_with(&cfg.data_dir) {
            // The API server may send one request's /mutate and /validate to different replicas.
            tracing::warn!(
                kid = %signer.kid,
                "the signing key is in this replica's data dir: replicas sharing a store must share one key \
                 (set signingKey to a file they all mount), or their stamps fail each other's checks"
            );
        }
        let retired = cfg.signing_key.parent().map(|d| d.join("retired")).unwrap_or_default();
        let verifier = Verifier::with_retired(&signer, &retired)?;
        let tokens = Tokens::default();
        tokens.set(store.tokens().await.context("reading tokens")?);
        Ok(State {
            store,
            directory,
            metrics,
            freshness,
            writer,
            policy,
            signer,
            verifier,
            tokens,
        })
    }
}

fn shared_store(cfg: &Config) -> bool {
    matches!(cfg.store, crate::store::Location::Postgres(_))
}

/// The policy file, or with `--dev` and none the built-in example; its warnings logged.
fn load_policy(cfg: &Config) -> anyhow::Result<Policy> {
    let policy = match &cfg.policy {
        Some(path) => Policy::load(path)?,
        None => Policy::parse(policy::EXAMPLE, "the built-in example policy")?,
    };
    for w in &policy.warnings {
        tracing::warn!(warning = %w, "policy");
    }
    tracing::info!(
        rules = policy.rules.len(),
        digest = &policy.digest[..12],
        "policy loaded"
    );
    Ok(policy)
}

/// With `--dev`, a fresh SCIM token each start: the previous one's secret isn't stored anywhere
/// to print. (Earlier dev tokens are revoked — not with a shared store, where the other dev
/// tokens are other replicas' own.)
async fn dev_token(cfg: &Config, state: &State) -> anyhow::Result<Option<String>> {
    if !cfg.dev {
        return Ok(None);
    }
    let store = &state.store;
    for t in store
        .tokens()
        .await?
        .iter()
        .filter(|t| !shared_store(cfg) && t.name.starts_with("dev-") && t.revoked_at.is_none())
    {
        store.revoke_token(&t.id, &crate::model::clock::now()).await?;
    }
    let name = format!(
        "dev-{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S"),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let (_, secret) = token::create(&**store, &name, Scope::Scim).await?;
    state.tokens.set(store.tokens().await?);
    Ok(Some(secret))
}

/// The serving certificate (generated into the data dir with `--dev`) and, when configured, the
/// CA an admission caller's certificate must chain to; both reloaded while serving.
struct Serving {
    certs: Arc<tls::Reloading>,
    clients: Option<Arc<tls::ClientAuth>>,
    admission: listener::Tls,
    scim: listener::Tls,
    dev_ca: Option<PathBuf>,
}

impl Serving {
    fn open(cfg: &Config, metrics: &Metrics) -> anyhow::Result<Serving> {
        let tls_dir = cfg.data_dir.join("tls");
        let (cert_files, dev_ca) = match &cfg.tls {
            Some(files) => (files.clone(), None),
            None => (tls::dev_certs(&tls_dir, &[])?, Some(tls_dir.join("ca.crt"))),
        };
        // One serving pair for both TLS listeners; its expiry is in the metrics for each.
        let report = tls::ExpiryReport {
            metrics: metrics.clone(),
            listeners: vec![crate::metrics::Listener::Admission, crate::metrics::Listener::Scim],
        };
        let certs =
            tls::Reloading::open_reporting(cert_files, Some(report)).context("loading the serving certificate")?;
        let clients = match &cfg.admission_client_ca {
            Some(ca) => Some(
                tls::ClientAuth::open(ca.clone(), cfg.admission_client_names.clone())
                    .context("loading the admission client CA")?,
            ),
            None => {
                // Said once at start, so an operator reading the logs of a production install
                // knows which guarantee they run without.
                if !cfg.dev {
                    tracing::warn!(
                        "caller authentication is off (no --admission-client-ca): anyone who reaches the admission port can ask for a decision and get a stamp; every stamp and decision record says so. The shipped overlays turn it on; see docs/deployment.md, \"Only the API server may ask\""
                    );
                }
                None
            }
        };
        let tls = |name, clients| listener::Tls {
            config: certs.server_config(clients),
            name,
            metrics: metrics.clone(),
        };
        Ok(Serving {
            admission: tls("admission", clients.clone()),
            scim: tls("scim", None),
            certs,
            clients,
            dev_ca,
        })
    }
}

/// The background tasks that keep the state current: token refresh (which also writes the
/// tokens' use), certificate and policy reload, following other replicas' writes.
fn background(cfg: &Config, state: &State, tls: &Serving, tasks: &mut JoinSet<()>, shutdown: &watch::Receiver<bool>) {
    tasks.spawn(
        state
            .tokens
            .clone()
            .refresh(state.store.clone(), state.metrics.clone(), shutdown.clone()),
    );
    tasks.spawn(tls.certs.clone().watch(cfg.cert_reload, shutdown.clone()));
    if let Some(c) = tls.clients.clone() {
        tasks.spawn(c.watch(cfg.cert_reload, shutdown.clone()));
    }
    tasks.spawn(crate::follower::follow(
        state.store.clone(),
        state.writer.clone(),
        cfg.replication.clone(),
        shutdown.clone(),
    ));
    if let Some(path) = cfg.policy.clone() {
        tasks.spawn(watch_policy(
            path,
            state.policy.clone(),
            cfg.policy_reload,
            state.metrics.clone(),
            shutdown.clone(),
        ));
    }
}

/// What scimgate reads from the Kubernetes API, each through a watch: the owners of
/// controller-created runs (CronWorkflows, PipelineRuns) and Argo's `workflowDefaults`.
struct Cluster {
    owners: Owners,
    argo_defaults: ArgoDefaults,
    /// For the offboarding sweep; `None` without API access.
    client: Option<kube::Client>,
}

impl Cluster {
    async fn read(cfg: &Config, tasks: &mut JoinSet<()>, shutdown: &watch::Receiver<bool>) -> anyhow::Result<Cluster> {
        let client = crate::cluster::client(cfg.kubeconfig.as_deref())
            .await
            .context("the Kubernetes client")?;
        let argo_defaults = match (&client, &cfg.argo_controller_config_map) {
            (Some(client), Some((ns, name))) => {
                let (defaults, watch) = ArgoDefaults::watch(client.clone(), ns, name, shutdown.clone());
                tasks.spawn(watch);
                defaults
            }
            _ => ArgoDefaults::fixed(Defaults::NotRead),
        };
        let owners = match client.clone() {
            Some(client) => {
                let (owners, watch) = Owners::watch(client, shutdown.clone());
                tasks.spawn(watch);
                owners
            }
            None => {
                tracing::warn!(
                    "no Kubernetes API access (no in-cluster service account, KUBECONFIG or --kubeconfig): runs a controller \
                     creates for an owner (a CronWorkflow's Workflows, a PipelineRun's TaskRuns) will be denied, because their \
                     owner cannot be read"
                );
                Owners::unavailable()
            }
        };
        Ok(Cluster {
            owners,
            argo_defaults,
            client,
        })
    }
}

/// The three routers, and what they leave running: the decision recorder (with its chain) and
/// retention.
struct Apps {
    routers: (Router, Router, Router),
    recorder: tokio::task::JoinHandle<()>,
    ready: Arc<AtomicBool>,
}

impl Apps {
    async fn build(
        cfg: &Config,
        state: State,
        cluster: Cluster,
        tasks: &mut JoinSet<()>,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<Apps> {
        let jwks = state.verifier.jwks();
        let audit_api = crate::audit::api::router(crate::audit::api::AuditState {
            store: state.store.clone(),
            tokens: state.tokens.clone(),
        });
        let console = crate::console::router(crate::console::Console {
            store: state.store.clone(),
            tokens: state.tokens.clone(),
            directory: state.directory.clone(),
            freshness: state.freshness.clone(),
            verifier: state.verifier.clone(),
            client: cluster.client.clone(),
        });
        let scim_state = ScimState {
            service: Service {
                writer: state.writer,
                quirks: cfg.quirks,
            },
            tokens: state.tokens,
            metrics: state.metrics.clone(),
            public_url: cfg.public_url.clone(),
            body_limit: cfg.body_limit,
        };
        let scim_app = Router::new()
            .nest(BASE_PATH, routes::router(scim_state))
            .nest("/api/v1", audit_api)
            .route(
                "/.well-known/jwks.json",
                axum::routing::get(move || async move { axum::Json(jwks) }),
            )
            .merge(console);
        let (chain, first_marks) =
            crate::audit::chain::Chain::start(state.signer.clone(), state.verifier.clone(), &*state.store)
                .await
                .context("starting the decision log's chain")?;
        let (recorder, recorder_task) = Recorder::start(state.store.clone(), state.metrics.clone(), chain, first_marks);
        let sweeper = |client| crate::offboarding::sweep::Sweeper {
            client,
            signer: state.signer.clone(),
            verifier: state.verifier.clone(),
            directory: state.directory.clone(),
            store: state.store.clone(),
            recorder: recorder.clone(),
            options: cfg.offboarding,
            policy: state.policy.clone(),
        };
        offboard(cfg, cluster.client.clone().map(sweeper), tasks, shutdown);
        let reporter = |client| crate::reports::Reporter {
            client,
            recorder: recorder.clone(),
            verifier: state.verifier.clone(),
            directory: state.directory.clone(),
            policy: state.policy.clone(),
            options: cfg.reports,
        };
        report(cfg, cluster.client.clone().map(reporter), tasks, shutdown);
        // Idle until the policy has an `access:` section.
        if let Some(client) = cluster.client.clone() {
            let reconciler = crate::access::reconcile::Reconciler {
                client,
                recorder: recorder.clone(),
                directory: state.directory.clone(),
                policy: state.policy.clone(),
                metrics: state.metrics.clone(),
                freshness: state.freshness.clone(),
            };
            tasks.spawn(reconciler.run(shutdown.clone()));
        }
        tasks.spawn(prune(
            state.store,
            Retention {
                signer: state.signer.clone(),
                verifier: state.verifier.clone(),
                metrics: state.metrics.clone(),
                days: cfg.audit_retention_days,
            },
            shutdown.clone(),
        ));
        let admission_app = admission::routes::router(AdmissionState {
            recorder,
            owners: cluster.owners,
            decider: Decider {
                directory: state.directory,
                policy: state.policy,
                verifier: state.verifier,
                signer: state.signer,
                freshness: state.freshness.clone(),
                stamp_max_age: cfg.stamp_max_age_seconds,
                argo_defaults: cluster.argo_defaults,
            },
            metrics: state.metrics.clone(),
        });
        let ready = Arc::new(AtomicBool::new(false));
        let ops_app = ops::router(OpsState {
            freshness: state.freshness,
            metrics: state.metrics,
            ready: ready.clone(),
        });
        Ok(Apps {
            routers: (admission_app, scim_app, ops_app),
            recorder: recorder_task,
            ready,
        })
    }
}

/// The offboarding sweep, unless it is off or there is no Kubernetes API to sweep (said once).
fn offboard(
    cfg: &Config,
    sweeper: Option<crate::offboarding::sweep::Sweeper>,
    tasks: &mut JoinSet<()>,
    shutdown: &watch::Receiver<bool>,
) {
    let mode = cfg.offboarding.mode;
    if mode == crate::offboarding::Mode::Off {
        return;
    }
    let Some(sweeper) = sweeper else {
        tracing::warn!(
            "offboarding.mode is {} but there is no Kubernetes API access: what departed people left running is not swept",
            mode.as_str()
        );
        return;
    };
    tracing::info!(mode = mode.as_str(), "offboarding: sweeping what departed people left");
    tasks.spawn(sweeper.run(shutdown.clone()));
}

/// The identity reports, when enabled and there is a Kubernetes API to write them to (said once).
fn report(
    cfg: &Config,
    reporter: Option<crate::reports::Reporter>,
    tasks: &mut JoinSet<()>,
    shutdown: &watch::Receiver<bool>,
) {
    match (cfg.reports.enabled, reporter) {
        (false, _) => {}
        (true, None) => {
            tracing::warn!("reports.enabled but there is no Kubernetes API access: no identity reports are written")
        }
        (true, Some(r)) => {
            tasks.spawn(r.run(shutdown.clone()));
        }
    }
}

/// Serve the routers on the bound listeners, each with its connection cap (the operations
/// listener's smaller: probes and scrapes need few, and a flood of them must not eat the
/// descriptors the webhooks need). Returns the addresses served.
fn serve_listeners(
    cfg: &Config,
    listeners: Listeners,
    tls: Serving,
    (admission_app, scim_app, ops_app): (Router, Router, Router),
    tasks: &mut JoinSet<()>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, SocketAddr, SocketAddr)> {
    let addrs = (
        listeners.admission.local_addr()?,
        listeners.scim.local_addr()?,
        listeners.ops.local_addr()?,
    );
    let limits = cfg.connections;
    let ops_limits = listener::Limits {
        max_connections: limits.max_connections.min(OPS_MAX_CONNECTIONS),
        ..limits
    };
    if let Some(soft) = listener::raise_open_file_limit() {
        let needed = (2 * limits.max_connections + ops_limits.max_connections + RESERVED_FDS) as u64;
        if soft < needed {
            tracing::warn!(
                open_file_limit = soft,
                needed,
                "the open file limit is below what the connection caps allow (2 × connections.maxPerListener + \
                 the operations listener's + a reserve): at the caps, accepts fail instead of waiting"
            );
        }
    }
    let serve = |l, tls, app, limits| listener::serve_with(l, tls, app, limits, shutdown.clone());
    tasks.spawn(serve(listeners.admission, Some(tls.admission), admission_app, limits));
    tasks.spawn(serve(listeners.scim, Some(tls.scim), scim_app, limits));
    tasks.spawn(serve(listeners.ops, None, ops_app, ops_limits));
    Ok(addrs)
}

fn print_dev_banner(admission: SocketAddr, scim: SocketAddr, token: Option<&str>, ca: Option<&Path>, data_dir: &Path) {
    let host = if scim.ip().is_unspecified() {
        "localhost".to_string()
    } else {
        scim.ip().to_string()
    };
    println!("scimgate (dev) is up");
    println!("  data dir:  {}", data_dir.display());
    println!("  admission: https://{host}:{}/validate and /mutate", admission.port());
    println!("  SCIM URL:  https://{host}:{}{BASE_PATH}", scim.port());
    if let Some(ca) = ca {
        println!("  CA:        {}   (curl --cacert it)", ca.display());
    }
    if let Some(t) = token {
        println!("  SCIM token (shown once; a new one each --dev start):");
        println!("{t}");
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Re-read the policy file when its content changes. A file that doesn't validate keeps the
/// current policy serving: it is logged and counted, and readiness is untouched.
async fn watch_policy(
    path: PathBuf,
    current: Arc<ArcSwap<Policy>>,
    every: std::time::Duration,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last = current.load().digest.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let text = match tokio::fs::read(&path).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the policy file; keeping the current policy");
                metrics.policy_reload(false);
                continue;
            }
        };
        let digest = policy::digest(&text);
        if digest == last {
            continue;
        }
        last = digest;
        match Policy::parse(&String::from_utf8_lossy(&text), &path.display().to_string()) {
            Ok(p) => {
                tracing::info!(rules = p.rules.len(), digest = &p.digest[..12], "policy reloaded");
                for w in &p.warnings {
                    tracing::warn!(warning = %w, "policy");
                }
                current.store(Arc::new(p));
                metrics.policy_reload(true);
            }
            Err(e) => {
                tracing::error!(error = %e, "the new policy is invalid; keeping the current one");
                metrics.policy_reload(false);
            }
        }
    }
}

/// What retention needs besides the store.
struct Retention {
    signer: Arc<Signer>,
    /// Checks the marks a prune relies on (other replicas', retired keys').
    verifier: Verifier,
    metrics: Metrics,
    days: u32,
}

/// Retention: delete decision records older than `days`, at start and hourly, leaving signed
/// prune marks where the chains now start (published as anchors). A chain that does not
/// recompute is left alone, logged as an error and counted: `audit verify --log` names it.
async fn prune(store: Arc<dyn Store>, r: Retention, mut shutdown: watch::Receiver<bool>) {
    loop {
        let days = r.days;
        let cutoff = (chrono::Utc::now() - chrono::Duration::days(i64::from(days)))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        match crate::audit::chain::prune(&*store, &r.signer, &r.verifier, &cutoff).await {
            Ok(p) => {
                p.marks.iter().for_each(crate::audit::chain::publish);
                if p.deleted > 0 {
                    tracing::info!(deleted = p.deleted, days, "decision records past retention deleted");
                }
                for refused in &p.refused {
                    tracing::error!(
                        replica = %refused.replica,
                        reason = refused.reason.as_str(),
                        why = %refused.why,
                        "decision log chain left (partly) unpruned: tampering? audit verify --log names it"
                    );
                    r.metrics.decision_log_prune_refused(refused.reason);
                }
            }
            Err(e) => tracing::warn!(error = %e, "pruning decision records failed; will retry"),
        }
        // A replica further behind than the change log reaches rebuilds its directory instead.
        let log_cutoff =
            (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        if let Err(e) = store.prune_changes(&log_cutoff).await {
            tracing::warn!(error = %e, "pruning the change log failed; will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
