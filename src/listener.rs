//! Serving a router on a bound listener: TCP, optional rustls, HTTP/1.1 and HTTP/2 (ALPN), until
//! shutdown, then draining in-flight requests for a bounded time. Takes an already-bound
//! `TcpListener` so tests bind `127.0.0.1:0` and pass it in.

use crate::metrics::Metrics;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A TLS handshake that hasn't finished by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// In-flight requests get this long after shutdown starts.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS for a listener: its config, and where failed handshakes are counted (`name` is the
/// listener's label).
#[derive(Clone)]
pub struct Tls {
    pub config: Arc<rustls::ServerConfig>,
    pub name: &'static str,
    pub metrics: Metrics,
}

/// What the connection says about the caller, in every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The client presented a certificate the listener's client verifier accepted (only
    /// listeners that require one accept any).
    pub client_certificate: bool,
}

pub async fn serve(listener: TcpListener, tls: Option<Tls>, app: Router, mut shutdown: watch::Receiver<bool>) {
    let acceptor = tls.as_ref().map(|t| {
        (
            tokio_rustls::TlsAcceptor::from(t.config.clone()),
            t.name,
            t.metrics.clone(),
        )
    });
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30));
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            match acceptor {
                Some((acceptor, name, metrics)) => {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            let reason = crate::tls::handshake_failure(&e);
                            metrics.handshake_failed(name, reason);
                            tracing::debug!(%peer, error = %e, reason, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            metrics.handshake_failed(name, "timeout");
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let caller = Caller {
                        client_certificate: tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty()),
                    };
                    let service = TowerToHyperService::new(with_caller(app, caller));
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                None => {
                    let service = TowerToHyperService::new(with_caller(
                        app,
                        Caller {
                            client_certificate: false,
                        },
                    ));
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still open after the drain timeout");
    }
}

type Incoming = axum::extract::Request<hyper::body::Incoming>;

/// The app, with `caller` in every request's extensions.
fn with_caller(
    app: Router,
    caller: Caller,
) -> tower::util::MapRequest<Router, impl FnMut(Incoming) -> Incoming + Clone> {
    use tower::ServiceExt;
    app.map_request(move |mut req: Incoming| {
        req.extensions_mut().insert(caller);
        req
    })
}
