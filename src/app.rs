//! Wiring: builds the state from a validated `Config`, binds and serves the listeners, runs the
//! background tasks (token refresh, certificate reload), and shuts all of it down gracefully on
//! SIGTERM/SIGINT. Holds no protocol logic.

use crate::cli::{CertsArgs, Cli, Command, TokenCommand};
use crate::config::{Config, StoreKind};
use crate::directory::Snapshot;
use crate::metrics::Metrics;
use crate::ops::{self, OpsState};
use crate::scim::routes::{self, ScimState, BASE_PATH};
use crate::scim::service::Service;
use crate::store::{embedded::Embedded, Scope, Store};
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
            let scim = TcpListener::bind(cfg.scim_addr)
                .await
                .with_context(|| format!("binding SCIM listener {}", cfg.scim_addr))?;
            let ops = TcpListener::bind(cfg.ops_addr)
                .await
                .with_context(|| format!("binding operations listener {}", cfg.ops_addr))?;
            let server = start(cfg, Listeners { scim, ops }).await?;
            shutdown_signal().await;
            tracing::info!("shutting down");
            server.stop().await;
            Ok(())
        }
        Command::Token(cmd) => token_command(cmd).await,
        Command::Certs(args) => certs_command(&args),
    }
}

/// Already-bound listeners: `serve` binds the configured addresses, tests bind `127.0.0.1:0`.
pub struct Listeners {
    pub scim: TcpListener,
    pub ops: TcpListener,
}

/// A started server.
pub struct Server {
    pub scim_addr: SocketAddr,
    pub ops_addr: SocketAddr,
    /// The SCIM token `--dev` created, if any.
    pub dev_token: Option<String>,
    /// The CA that signed the serving certificate, when we generated it.
    pub dev_ca: Option<PathBuf>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Server {
    /// Stop accepting, drain in-flight requests, end background tasks.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn open_store(cfg: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match &cfg.store {
        StoreKind::Embedded => {
            Ok(Arc::new(Embedded::open(&cfg.data_dir).await.with_context(|| {
                format!("opening the embedded store in {}", cfg.data_dir.display())
            })?))
        }
        StoreKind::Postgres(_) => {
            bail!("the PostgreSQL store is not available in this build yet; use the embedded store")
        }
    }
}

pub async fn start(cfg: Config, listeners: Listeners) -> anyhow::Result<Server> {
    let started = std::time::Instant::now();
    let store = open_store(&cfg).await?;
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
    let writer = Writer::start(store.clone(), directory, metrics.clone());

    let tokens = Tokens::default();
    tokens.set(store.tokens().await.context("reading tokens")?);
    let mut dev_token = None;
    if cfg.dev {
        // A fresh token each start: the previous one's secret isn't stored anywhere to print.
        for t in store
            .tokens()
            .await?
            .iter()
            .filter(|t| t.name.starts_with("dev-") && t.revoked_at.is_none())
        {
            store.revoke_token(&t.id, &crate::scim::now()).await?;
        }
        let name = format!("dev-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f"));
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
    tasks.spawn(tokens.clone().refresh(store.clone(), shutdown_rx.clone()));
    tasks.spawn(certs.clone().watch(cfg.cert_reload, shutdown_rx.clone()));

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
    let scim_app = Router::new().nest(BASE_PATH, routes::router(scim_state));
    let ready = Arc::new(AtomicBool::new(false));
    let ops_app = ops::router(OpsState {
        metrics,
        ready: ready.clone(),
    });

    let scim_addr = listeners.scim.local_addr()?;
    let ops_addr = listeners.ops.local_addr()?;
    tasks.spawn(listener::serve(
        listeners.scim,
        Some(tls_config),
        scim_app,
        shutdown_rx.clone(),
    ));
    tasks.spawn(listener::serve(listeners.ops, None, ops_app, shutdown_rx));
    ready.store(true, Ordering::Release);

    tracing::info!(%scim_addr, %ops_addr, millis = started.elapsed().as_millis() as u64, "scimgate serving");
    if cfg.dev {
        print_dev_banner(scim_addr, dev_token.as_deref(), dev_ca.as_deref(), &cfg.data_dir);
    }
    Ok(Server {
        scim_addr,
        ops_addr,
        dev_token,
        dev_ca,
        shutdown,
        tasks,
    })
}

fn print_dev_banner(scim: SocketAddr, token: Option<&str>, ca: Option<&Path>, data_dir: &Path) {
    let host = if scim.ip().is_unspecified() {
        "localhost".to_string()
    } else {
        scim.ip().to_string()
    };
    println!("scimgate (dev) is up");
    println!("  data dir:  {}", data_dir.display());
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

async fn token_command(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create { data_dir, name, scope } => {
            if name.trim().is_empty() {
                bail!("--name must not be empty");
            }
            let store = Embedded::open(&data_dir).await?;
            let (record, secret) = token::create(&store, &name, scope).await?;
            println!(
                "created token '{}' (scope {}, id {})",
                record.name,
                record.scope.as_str(),
                record.id
            );
            println!("{secret}");
        }
        TokenCommand::List { data_dir } => {
            let store = Embedded::open(&data_dir).await?;
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
        TokenCommand::Revoke { data_dir, name } => {
            let store = Embedded::open(&data_dir).await?;
            if !store.revoke_token(&name, &crate::scim::now()).await? {
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
    use base64::Engine;
    eprintln!(
        "wrote {} and {} (and ca.crt, ca.key) for {}",
        files.cert.display(),
        files.key.display(),
        names.join(", ")
    );
    eprintln!("caBundle for the webhook configurations:");
    println!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(generated.ca_pem.as_bytes())
    );
    Ok(())
}
