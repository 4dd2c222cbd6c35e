//! Serving a router on a bound listener: TCP, optional rustls, HTTP/1.1 and HTTP/2 (ALPN), until
//! shutdown, then draining in-flight requests for a bounded time. Takes an already-bound
//! `TcpListener` so tests bind `127.0.0.1:0` and pass it in.
//!
//! Also owns what a connection may hold on to ([`Limits`]): at most `max_connections` at once
//! (beyond that, new ones wait in the kernel's accept queue until one ends), a connection with no
//! request in flight is closed after `idle_timeout` (this also covers a client that connects and
//! sends nothing, or trickles its headers, on HTTP/1.1 and HTTP/2 alike), and a request body must
//! have arrived `body_read_timeout` after its headers did. And it raises `RLIMIT_NOFILE` to the
//! hard limit at start ([`raise_open_file_limit`]).

use crate::metrics::Metrics;
use axum::Router;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};

/// A TLS handshake that hasn't finished by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// In-flight requests get this long after shutdown starts.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// An idle connection told to close (HTTP/2 GOAWAY; HTTP/1.1 closes at once) is dropped after
/// this long if it still hasn't (a client that never reads our last response).
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What one listener lets its connections hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; the next one waits (unaccepted) until one ends.
    pub max_connections: usize,
    /// A connection with no request in flight this long is closed.
    pub idle_timeout: Duration,
    /// HTTP/1.1 request headers must be complete this long after the request began.
    pub header_read_timeout: Duration,
    /// A request body must have arrived this long after its headers.
    pub body_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            // Longer than the 90 s after which Go's HTTP transport (kube-apiserver's webhook
            // client, most IdPs' SCIM clients) closes its own idle connections: the client, not
            // us, ends a pooled connection, so no request races our close on HTTP/1.1.
            idle_timeout: Duration::from_secs(120),
            header_read_timeout: Duration::from_secs(10),
            // The API server gives a webhook call at most 30 s (timeoutSeconds); a body still
            // arriving after that is no one's request.
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

/// Per listener. An idle TLS connection costs tens of KiB (see docs/performance.md), so the
/// admission and SCIM listeners at their caps stay well inside a 512Mi container; real clients
/// (a few API servers and IdPs, pooling) use a handful.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// The request body did not arrive within the listener's `body_read_timeout`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive within the body read timeout")]
pub struct BodyTimeout;

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

/// Raise the soft open-file limit to the hard one, so the connection caps, not the default 1024,
/// decide how many clients we hold; logs both. Returns the soft limit in force.
pub fn raise_open_file_limit() -> Option<u64> {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE).ok();
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) => {
            tracing::info!(
                soft_before = before.map(|b| b.0),
                hard = before.map(|b| b.1),
                soft = now,
                "open file limit"
            );
            Some(now)
        }
        Err(e) => {
            tracing::warn!(error = %e, soft = before.map(|b| b.0), "could not raise the open file limit");
            before.map(|b| b.0)
        }
    }
}

/// [`serve_with`] with the default [`Limits`].
pub async fn serve(listener: TcpListener, tls: Option<Tls>, app: Router, shutdown: watch::Receiver<bool>) {
    serve_with(listener, tls, app, Limits::default(), shutdown).await;
}

pub async fn serve_with(
    listener: TcpListener,
    tls: Option<Tls>,
    app: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tls.as_ref().map(|t| {
        (
            tokio_rustls::TlsAcceptor::from(t.config.clone()),
            t.name,
            t.metrics.clone(),
        )
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30));
    let builder = Arc::new(builder);
    let max = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(max as usize));
    loop {
        // A slot first: at the cap we stop accepting, and new connections wait in the kernel's
        // accept queue (the API server's call waits instead of failing) until one ends.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = stopping(&mut shutdown) => break,
        };
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
            _ = stopping(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match acceptor {
                Some((acceptor, name, metrics)) => {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            let reason = crate::tls::handshake_failure(&e);
                            metrics.handshake_failed(name, reason);
                            // Bounded: a refused client certificate's error lists what it
                            // presented (its extended key usages, say), and the peer wrote that.
                            let error = e.to_string();
                            tracing::debug!(%peer, error = %crate::telemetry::field(&error), reason, "TLS handshake failed");
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
                    connection(tls, &builder, app, caller, limits, shutdown, peer).await;
                }
                None => {
                    let caller = Caller {
                        client_certificate: false,
                    };
                    connection(stream, &builder, app, caller, limits, shutdown, peer).await;
                }
            }
        });
    }
    drop(listener);
    // Every connection holds a slot until it ends: all slots back means all drained.
    if tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(max))
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after the drain timeout");
    }
}

/// Resolves once shutdown is asked for (or whoever could ask is gone).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serve one connection until it ends, goes idle for too long, or shutdown drains it.
async fn connection<I>(
    io: I,
    builder: &auto::Builder<TokioExecutor>,
    app: Router,
    caller: Caller,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    peer: std::net::SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let service = TowerToHyperService::new(Requests {
        app,
        caller,
        activity: activity.clone(),
        body_read_timeout: limits.body_read_timeout,
    });
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    tokio::pin!(conn);
    let grace = tokio::select! {
        ended = conn.as_mut() => {
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            return;
        }
        _ = activity.idle(limits.idle_timeout) => {
            tracing::debug!(%peer, "closing an idle connection");
            CLOSE_GRACE
        }
        _ = stopping(&mut shutdown) => DRAIN_TIMEOUT,
    };
    conn.as_mut().graceful_shutdown();
    match tokio::time::timeout(grace, conn).await {
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
        Ok(Ok(())) => {}
        Err(_) => tracing::debug!(%peer, "dropped a connection that did not close in time"),
    }
}

/// When a connection last had a request in flight, and how many it has now.
struct Activity {
    started: Instant,
    /// Milliseconds after `started` that the last request ended (0: none yet).
    last: AtomicU64,
    busy: AtomicUsize,
    changed: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            started: Instant::now(),
            last: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            changed: Notify::new(),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        InFlight(self.clone())
    }

    /// Resolves once no request has been in flight for `timeout`.
    async fn idle(&self, timeout: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a request ending in between is not missed.
            changed.as_mut().enable();
            if self.busy.load(Ordering::SeqCst) > 0 {
                changed.await;
                continue;
            }
            let since = self.started + Duration::from_millis(self.last.load(Ordering::SeqCst));
            let deadline = since + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = changed => {}
            }
        }
    }
}

/// A request in flight; its end (drop) restarts the idle clock.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        let ms = u64::try_from(a.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.last.store(ms, Ordering::SeqCst);
        a.busy.fetch_sub(1, Ordering::SeqCst);
        a.changed.notify_waiters();
    }
}

/// The app as the connection calls it: the caller in the extensions, the body under its
/// deadline, and the request counted in flight until its response is made.
#[derive(Clone)]
struct Requests {
    app: Router,
    caller: Caller,
    activity: Arc<Activity>,
    body_read_timeout: Duration,
}

type HyperRequest = axum::extract::Request<Incoming>;

impl tower::Service<HyperRequest> for Requests {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HyperRequest) -> Self::Future {
        use tower::ServiceExt;
        let in_flight = self.activity.begin();
        let timeout = self.body_read_timeout;
        let mut req = req.map(|body| axum::body::Body::new(Deadline::new(body, timeout)));
        req.extensions_mut().insert(self.caller);
        let app = self.app.clone();
        Box::pin(async move {
            let response = app.oneshot(req).await;
            drop(in_flight);
            response
        })
    }
}

/// A request body that fails with [`BodyTimeout`] once its deadline passes (set when the
/// headers arrived): a body trickled a byte at a time is cut, not waited for.
struct Deadline {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    fn new(inner: Incoming, timeout: Duration) -> Deadline {
        Deadline {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl Body for Deadline {
    type Data = hyper::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
