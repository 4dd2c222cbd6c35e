//! Wiring: builds the state from a validated `Config`, binds and serves the listeners, runs the
//! background tasks (token refresh, certificate reload), and shuts all of it down gracefully on
//! SIGTERM/SIGINT. Holds no protocol logic.

use crate::admission::{self, AdmissionState, Decider};
use crate::audit::recorder::Recorder;
use crate::cli::{CertsArgs, Cli, Command, PolicyCommand, TokenCommand};
use crate::config::Config;
use crate::directory::Snapshot;
use crate::freshness::Freshness;
use crate::metrics::Metrics;
use crate::ops::{self, OpsState};
use crate::policy::{self, Policy};
use crate::scim::routes::{self, ScimState, BASE_PATH};
use crate::scim::service::Service;
use crate::stamp::{Signer, Verifier};
use crate::store::{Location, Scope, Store};
use crate::token::{self, Tokens};
use crate::writer::Writer;
use crate::{listener, telemetry, tls};
use anyhow::{bail, Context};
use arc_swap::ArcSwap;
use axum::Router;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let cfg = Config::from_args(&args)?;
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
        Command::Token(cmd) => token_command(cmd).await,
        Command::Certs(args) => certs_command(&args),
        Command::Audit(crate::cli::AuditCommand::Query(a)) => audit_query(*a).await,
        Command::Audit(crate::cli::AuditCommand::Verify(a)) => audit_verify(a).await,
        Command::Audit(crate::cli::AuditCommand::Who(a)) => audit_who(a).await,
        Command::Review(a) => {
            let ca = a.ca.clone().or_else(|| {
                let dev = Path::new(crate::config::DEFAULT_DATA_DIR).join("tls/ca.crt");
                dev.exists().then_some(dev)
            });
            let opts = crate::review::Options {
                file: a.file,
                url: a.url,
                ca,
                user: a.user,
                groups: a.groups,
                operation: a.operation,
                old_file: a.old_file,
                namespace: a.namespace,
                dry_run: a.dry_run,
                json: a.output == "json",
            };
            if crate::review::run(&opts).await? {
                Ok(())
            } else {
                Err(Denied.into())
            }
        }
        Command::Policy(PolicyCommand::Test {
            file,
            policy: policy_file,
            store,
            user,
            namespace,
        }) => {
            let p = Policy::load(&policy_file)?;
            let store = open_store(&store).await?;
            let snapshot = Snapshot::from_loaded(store.load().await?);
            let (signer, _) = Signer::generate()?;
            let decider = Decider {
                directory: Arc::new(ArcSwap::from_pointee(snapshot)),
                policy: Arc::new(ArcSwap::from_pointee(p)),
                verifier: Verifier::from_signer(&signer),
                signer: Arc::new(signer),
                freshness: Arc::new(Freshness::sole_writer()),
                stamp_max_age: crate::config::DEFAULT_STAMP_MAX_AGE_SECONDS,
            };
            let opts = crate::review::Options {
                file: file.clone(),
                url: String::new(),
                ca: None,
                user,
                groups: vec![],
                operation: "CREATE".into(),
                old_file: None,
                namespace,
                dry_run: false,
                json: false,
            };
            let mut all_allowed = true;
            for request in crate::review::requests(&opts)? {
                let body = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
                let review = crate::admission::review::decode(body.to_string().as_bytes())?;
                let req = review.request.map_err(anyhow::Error::msg)?;
                let answer = admission::decide(&decider, &req, admission::Hook::Validate);
                all_allowed &= answer.allowed;
                let title = req.object.as_ref().map(crate::review::title).unwrap_or_default();
                println!(
                    "{} {} {title}",
                    if answer.allowed { "ALLOWED" } else { "DENIED " },
                    req.kind
                );
                if let Some(m) = &answer.message {
                    println!("  {m}");
                }
                for w in &answer.warnings {
                    println!("  warning: {w}");
                }
            }
            if all_allowed {
                Ok(())
            } else {
                Err(Denied.into())
            }
        }
        Command::Policy(PolicyCommand::Replay {
            policy: file,
            store,
            since,
            examples,
            output,
        }) => {
            use crate::audit::{query, replay};
            let p = Policy::load(&file)?;
            let store = open_store(&store).await?;
            let from = query::parse_time(&since, chrono::Utc::now()).map_err(anyhow::Error::msg)?;
            let mut records = Vec::new();
            let mut after = None;
            loop {
                let q = query::DecisionQuery {
                    from: Some(from.clone()),
                    after: after.clone(),
                    limit: query::MAX_LIMIT,
                    ..Default::default()
                };
                let page = store.query_decisions(&q).await?;
                after = page.last().map(|r| r.id.clone());
                let full = page.len() as u32 == query::MAX_LIMIT;
                records.extend(page);
                if !full {
                    break;
                }
            }
            let report = replay::replay(&records, &p);
            if output == "json" {
                println!("{}", serde_json::to_string_pretty(&replay::to_json(&report, examples))?);
            } else {
                print!("{}", replay::to_text(&report, examples));
            }
            Ok(())
        }
        Command::Policy(PolicyCommand::Check { file }) => {
            let p = Policy::load(&file)?;
            println!(
                "{}: valid ({} rules, mode {:?}, digest {})",
                file.display(),
                p.rules.len(),
                p.mode,
                &p.digest[..12]
            );
            Ok(())
        }
    }
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
}

impl Server {
    /// Stop accepting, drain in-flight requests, end background tasks.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
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
        millis = started.elapsed().as_millis() as u64,
        "directory loaded"
    );
    let directory = Arc::new(ArcSwap::from_pointee(snapshot));
    let shared = matches!(cfg.store, crate::store::Location::Postgres(_));
    let freshness = Arc::new(Freshness::new(shared, &cfg.replication));
    let writer =
        Writer::<crate::scim::Error>::start(store.clone(), directory.clone(), metrics.clone(), freshness.clone());

    let policy = match &cfg.policy {
        Some(path) => Policy::load(path)?,
        None => Policy::parse(policy::EXAMPLE, "the built-in example policy")?,
    };
    tracing::info!(
        rules = policy.rules.len(),
        digest = &policy.digest[..12],
        "policy loaded"
    );
    let policy = Arc::new(ArcSwap::from_pointee(policy));
    let signer = Arc::new(Signer::load_or_create(&cfg.signing_key)?);
    if shared && cfg.signing_key.starts_with(&cfg.data_dir) {
        // The API server may send one request's /mutate and /validate to different replicas.
        tracing::warn!(
            kid = %signer.kid,
            "the signing key is in this replica's data dir: replicas sharing a store must share one key \
             (set signingKey to a file they all mount), or their stamps fail each other's checks"
        );
    }

    let tokens = Tokens::default();
    tokens.set(store.tokens().await.context("reading tokens")?);
    let mut dev_token = None;
    if cfg.dev {
        // A fresh token each start: the previous one's secret isn't stored anywhere to print.
        // (Not with a shared store, where the other dev tokens are other replicas' own.)
        for t in store
            .tokens()
            .await?
            .iter()
            .filter(|t| !shared && t.name.starts_with("dev-") && t.revoked_at.is_none())
        {
            store.revoke_token(&t.id, &crate::model::clock::now()).await?;
        }
        let name = format!(
            "dev-{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S"),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let (_, secret) = token::create(&*store, &name, Scope::Scim).await?;
        tokens.set(store.tokens().await?);
        dev_token = Some(secret);
    }

    let tls_dir = cfg.data_dir.join("tls");
    let (cert_files, dev_ca) = match &cfg.tls {
        Some(files) => (files.clone(), None),
        None => (tls::dev_certs(&tls_dir, &[])?, Some(tls_dir.join("ca.crt"))),
    };
    let certs = tls::Reloading::open(cert_files).context("loading the serving certificate")?;
    let tls_config = certs.server_config();

    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tasks.spawn(
        tokens
            .clone()
            .refresh(store.clone(), metrics.clone(), shutdown_rx.clone()),
    );
    tasks.spawn(certs.clone().watch(cfg.cert_reload, shutdown_rx.clone()));
    tasks.spawn(crate::follower::follow(
        store.clone(),
        writer.clone(),
        cfg.replication.clone(),
        shutdown_rx.clone(),
    ));
    tasks.spawn(prune(store.clone(), cfg.audit_retention_days, shutdown_rx.clone()));
    if let Some(path) = cfg.policy.clone() {
        tasks.spawn(watch_policy(
            path,
            policy.clone(),
            cfg.policy_reload,
            metrics.clone(),
            shutdown_rx.clone(),
        ));
    }

    let scim_state = ScimState {
        service: Service {
            writer,
            quirks: cfg.quirks,
        },
        tokens,
        metrics: metrics.clone(),
        public_url: cfg.public_url.clone(),
        body_limit: cfg.body_limit,
    };
    // Keys retired by a rotation (moved to keys/retired/) still verify stamps they made.
    let retired = cfg.signing_key.parent().map(|d| d.join("retired")).unwrap_or_default();
    let verifier = Verifier::with_retired(&signer, &retired)?;
    let jwks = verifier.jwks();
    let audit_api = crate::audit::api::router(crate::audit::api::AuditState {
        store: store.clone(),
        tokens: scim_state.tokens.clone(),
    });
    let scim_app = Router::new()
        .nest(BASE_PATH, routes::router(scim_state))
        .nest("/api/v1", audit_api)
        .route(
            "/.well-known/jwks.json",
            axum::routing::get(move || async move { axum::Json(jwks) }),
        );
    let (recorder, recorder_task) = Recorder::start(store.clone(), metrics.clone());
    let admission_app = admission::routes::router(AdmissionState {
        recorder,
        decider: Decider {
            directory,
            policy,
            verifier,
            signer,
            freshness: freshness.clone(),
            stamp_max_age: cfg.stamp_max_age_seconds,
        },
        metrics: metrics.clone(),
    });
    let ready = Arc::new(AtomicBool::new(false));
    let ops_app = ops::router(OpsState {
        freshness,
        metrics,
        ready: ready.clone(),
    });

    let admission_addr = listeners.admission.local_addr()?;
    let scim_addr = listeners.scim.local_addr()?;
    let ops_addr = listeners.ops.local_addr()?;
    tasks.spawn(listener::serve(
        listeners.admission,
        Some(tls_config.clone()),
        admission_app,
        shutdown_rx.clone(),
    ));
    tasks.spawn(listener::serve(
        listeners.scim,
        Some(tls_config),
        scim_app,
        shutdown_rx.clone(),
    ));
    tasks.spawn(listener::serve(listeners.ops, None, ops_app, shutdown_rx));
    ready.store(true, Ordering::Release);

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
        recorder: recorder_task,
        admission_addr,
        scim_addr,
        ops_addr,
        dev_token,
        dev_ca,
        shutdown,
        tasks,
    })
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

/// Open the store a command names, saying which on failure.
async fn open_store(args: &crate::cli::StoreArgs) -> anyhow::Result<Arc<dyn Store>> {
    let location = args.location().map_err(anyhow::Error::msg)?;
    crate::store::open(&location)
        .await
        .with_context(|| format!("opening {}", location.describe()))
}

async fn token_command(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create { store, name, scope } => {
            if name.trim().is_empty() {
                bail!("--name must not be empty");
            }
            let store = open_store(&store).await?;
            let (record, secret) = token::create(&*store, &name, scope).await?;
            println!(
                "created token '{}' (scope {}, id {})",
                record.name,
                record.scope.as_str(),
                record.id
            );
            println!("{secret}");
        }
        TokenCommand::List { store } => {
            let store = open_store(&store).await?;
            println!("{:<24} {:<6} {:<36} {:<26} REVOKED", "NAME", "SCOPE", "ID", "CREATED");
            for t in store.tokens().await? {
                println!(
                    "{:<24} {:<6} {:<36} {:<26} {}",
                    t.name,
                    t.scope.as_str(),
                    t.id,
                    t.created_at,
                    t.revoked_at.as_deref().unwrap_or("-")
                );
            }
        }
        TokenCommand::Revoke { store, name } => {
            let store = open_store(&store).await?;
            if !store.revoke_token(&name, &crate::model::clock::now()).await? {
                bail!("no live token named or with id '{name}'");
            }
            println!(
                "revoked '{name}'; running servers stop accepting it within {}s",
                token::REFRESH.as_secs()
            );
        }
    }
    Ok(())
}

fn certs_command(args: &CertsArgs) -> anyhow::Result<()> {
    let mut names = vec![
        format!("{}.{}.svc", args.service, args.namespace),
        format!("{}.{}.svc.cluster.local", args.service, args.namespace),
        format!("{}.{}", args.service, args.namespace),
        args.service.clone(),
    ];
    names.extend(args.names.iter().cloned());
    let generated = tls::generate(&names, &format!("scimgate CA ({})", args.namespace))?;
    let files = tls::write(&args.out, &generated)?;
    // Replicas sharing a PostgreSQL store must sign stamps with one key; an existing key is
    // kept, so re-issuing certificates never rotates it.
    let signing = args.out.join("signing.key");
    Signer::load_or_create(&signing)?;
    use base64::Engine;
    eprintln!(
        "wrote {} and {} (and ca.crt, ca.key, and the stamp-signing key {}) for {}",
        files.cert.display(),
        files.key.display(),
        signing.display(),
        names.join(", ")
    );
    eprintln!("caBundle for the webhook configurations:");
    println!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(generated.ca_pem.as_bytes())
    );
    Ok(())
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

/// `review` found a denial: exit 1 without an error message of our own.
#[derive(Debug, thiserror::Error)]
#[error("denied")]
pub struct Denied;

/// Retention: delete decision records older than `days`, at start and hourly.
async fn prune(store: Arc<dyn Store>, days: u32, mut shutdown: watch::Receiver<bool>) {
    loop {
        let cutoff = (chrono::Utc::now() - chrono::Duration::days(i64::from(days)))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        match store.prune_decisions(&cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, days, "decision records past retention deleted"),
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

async fn audit_query(a: crate::cli::AuditQueryArgs) -> anyhow::Result<()> {
    use crate::audit::{api, query};
    let params = api::Params {
        user: a.user,
        group: a.group,
        namespace: a.namespace,
        kind: a.kind,
        action: a.action,
        outcome: a.outcome,
        rule: a.rule,
        since: a.since,
        from: a.from,
        to: a.to,
        after: a.after,
        limit: Some(a.limit),
    };
    let (records, next) = match &a.url {
        Some(url) => {
            let token = a
                .token
                .as_deref()
                .context("--url needs --token (or SCIMGATE_AUDIT_TOKEN) with scope audit")?;
            let client = cli_client(a.ca.as_deref())?;
            let pairs: Vec<(&str, String)> = [
                ("user", params.user.clone()),
                ("group", params.group.clone()),
                ("namespace", params.namespace.clone()),
                ("kind", params.kind.clone()),
                ("action", params.action.clone()),
                ("outcome", params.outcome.clone()),
                ("rule", params.rule.clone()),
                ("since", params.since.clone()),
                ("from", params.from.clone()),
                ("to", params.to.clone()),
                ("after", params.after.clone()),
                ("limit", params.limit.map(|l| l.to_string())),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            let r = client
                .get(format!("{}/api/v1/decisions", url.trim_end_matches('/')))
                .bearer_auth(token)
                .query(&pairs)
                .send()
                .await?;
            let status = r.status();
            let body: serde_json::Value = r.json().await.context("the audit API did not answer JSON")?;
            if !status.is_success() {
                bail!("{status}: {}", body["error"].as_str().unwrap_or("error"));
            }
            let records = body["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(query::from_json)
                .collect::<Vec<_>>();
            (records, body["next"].as_str().map(String::from))
        }
        None => {
            let store = open_store(&a.store).await?;
            let q = api::to_query(&*store, params).await.map_err(anyhow::Error::msg)?;
            let records = store.query_decisions(&q).await?;
            let next = (records.len() as u32 == q.limit.min(query::MAX_LIMIT))
                .then(|| records.last().map(|r| r.id.clone()))
                .flatten();
            (records, next)
        }
    };
    print!("{}", query::render(&records, a.output));
    if let Some(n) = next {
        eprintln!("more: --after {n}");
    }
    Ok(())
}

/// A JWKS from a file or an http(s) URL.
async fn load_jwks(jwks: &str, ca: Option<&Path>) -> anyhow::Result<Verifier> {
    let doc: serde_json::Value = if jwks.starts_with("https://") || jwks.starts_with("http://") {
        cli_client(ca)?
            .get(jwks)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
            .context("the JWKS URL did not answer JSON")?
    } else {
        serde_json::from_slice(&std::fs::read(jwks).with_context(|| format!("reading {jwks}"))?)
            .context("the JWKS file is not JSON")?
    };
    Ok(Verifier::from_jwks(&doc)?)
}

async fn audit_who(a: crate::cli::AuditWhoArgs) -> anyhow::Result<()> {
    use crate::audit::who;
    let (ar, ns, name) = who::parse_target(&a.target, a.selector.is_some())?;
    let verifier = match &a.jwks {
        Some(j) => load_jwks(j, a.ca.as_deref()).await?,
        None => {
            let key = a.store.data_dir.join("keys/signing.key");
            if !key.exists() {
                bail!(
                    "no --jwks and no signing key at {}: pass --jwks FILE|URL",
                    key.display()
                );
            }
            Verifier::with_retired(&Signer::load_or_create(&key)?, &a.store.data_dir.join("keys/retired"))?
        }
    };
    let config = match &a.kubeconfig {
        Some(path) => {
            let kc =
                kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig and not in a cluster")?,
    };
    let client = kube::Client::try_from(config)?;
    let objects = who::fetch(client, &ar, ns.as_deref(), name.as_deref(), a.selector.as_deref()).await?;
    let store = match a.store.location().map_err(anyhow::Error::msg)? {
        Location::Embedded(dir) if !dir.join(crate::store::embedded::FILE).exists() => None,
        _ => Some(open_store(&a.store).await?),
    };
    let mut reports = Vec::new();
    let mut forged = false;
    for obj in &objects {
        let (report, f) = who::explain(&verifier, store.as_deref(), obj).await?;
        forged |= f;
        reports.push(report);
    }
    if a.output == "json" {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else if reports.is_empty() {
        println!("no {} matched", ar.plural);
    } else {
        for r in &reports {
            print!("{}", who::text(r));
        }
    }
    if forged {
        return Err(Denied.into());
    }
    Ok(())
}

async fn audit_verify(a: crate::cli::AuditVerifyArgs) -> anyhow::Result<()> {
    use crate::audit::verify;
    let verifier = load_jwks(&a.jwks, a.ca.as_deref()).await?;
    let text = if a.file == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s
    } else {
        std::fs::read_to_string(&a.file).with_context(|| format!("reading {}", a.file.display()))?
    };
    let mut findings = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v = <serde_json::Value as serde::Deserialize>::deserialize(doc).context("parsing the kubectl output")?;
        findings.extend(
            verify::objects(&v)
                .into_iter()
                .map(|o| verify::verify_object(&verifier, o)),
        );
    }
    if a.output == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(&findings.iter().map(verify::to_json).collect::<Vec<_>>())?
        );
    } else {
        for f in &findings {
            println!("{}", verify::line(f));
        }
    }
    if findings.iter().any(verify::Finding::forged) {
        return Err(Denied.into());
    }
    Ok(())
}

/// An HTTPS client for the CLI's calls to a server, trusting `ca` when given.
fn cli_client(ca: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .use_rustls_tls();
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    Ok(b.build()?)
}
