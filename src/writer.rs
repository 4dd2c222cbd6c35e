//! The one write path for identity state: compute a change against the newest snapshot, make it
//! durable, then publish the new snapshot — in that order, so an acknowledged SCIM write is both
//! on disk and visible to the very next admission request.
//!
//! A single task owns the sequence. Requests queued while a commit is in flight are computed
//! against the snapshot that includes their predecessors and committed together in one
//! transaction (group commit: one fsync for many writes). If that combined commit fails on a
//! conflict, each request is retried alone so one bad write cannot fail its neighbours.

use crate::directory::Snapshot;
use crate::metrics::Metrics;
use crate::scim;
use crate::store::{self, Change, Store};
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Computes the changes of one write from the current snapshot. Called again on retry.
pub type Plan = Box<dyn Fn(&Snapshot) -> scim::Result<Vec<Change>> + Send + Sync>;

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 256;

struct Request {
    plan: Plan,
    reply: oneshot::Sender<scim::Result<Vec<Change>>>,
}

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
    directory: Arc<ArcSwap<Snapshot>>,
}

impl Writer {
    /// Start the writer task over `store`, publishing into `directory`.
    pub fn start(store: Arc<dyn Store>, directory: Arc<ArcSwap<Snapshot>>, metrics: Metrics) -> Writer {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(rx, store, directory.clone(), metrics));
        Writer { tx, directory }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.directory.load_full()
    }

    /// Apply one write; returns the committed changes once they are durable and published.
    pub async fn write(&self, plan: Plan) -> scim::Result<Vec<Change>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { plan, reply })
            .await
            .map_err(|_| scim::Error::status(axum::http::StatusCode::SERVICE_UNAVAILABLE, "shutting down"))?;
        rx.await
            .map_err(|_| scim::Error::status(axum::http::StatusCode::SERVICE_UNAVAILABLE, "shutting down"))?
    }
}

fn store_error(e: &store::Error) -> scim::Error {
    match e {
        store::Error::Unique(what) => scim::Error::uniqueness(format!("{what} already exists")),
        store::Error::Version(what) => scim::Error::status(
            axum::http::StatusCode::CONFLICT,
            format!("{what} was changed concurrently; retry"),
        ),
        other => {
            tracing::error!(error = %other, "identity store write failed");
            scim::Error::status(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "the identity store is unavailable; retry later",
            )
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<Request>,
    store: Arc<dyn Store>,
    directory: Arc<ArcSwap<Snapshot>>,
    metrics: Metrics,
) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let published = directory.load_full();
        let mut working = (*published).clone();
        let mut planned: Vec<(Request, scim::Result<Vec<Change>>)> = Vec::with_capacity(batch.len());
        let mut all: Vec<Change> = Vec::new();
        for req in batch.drain(..) {
            let out = (req.plan)(&working);
            if let Ok(changes) = &out {
                working.apply(changes);
                all.extend(changes.iter().cloned());
            }
            planned.push((req, out));
        }
        if all.is_empty() {
            for (req, out) in planned {
                let _ = req.reply.send(out);
            }
            continue;
        }
        let started = std::time::Instant::now();
        match store.commit(&all).await {
            Ok(()) => {
                metrics.store_commit(started.elapsed(), planned.len());
                directory.store(Arc::new(working));
                metrics.directory(&directory.load());
                for (req, out) in planned {
                    let _ = req.reply.send(out);
                }
            }
            Err(e) if planned.len() > 1 && matches!(e, store::Error::Unique(_) | store::Error::Version(_)) => {
                // Someone in the batch conflicts: redo each alone against the then-current state.
                for (req, _) in planned {
                    let current = (*directory.load_full()).clone();
                    let out = single(&*store, &directory, current, &req.plan, &metrics).await;
                    let _ = req.reply.send(out);
                }
            }
            Err(e) => {
                let err = store_error(&e);
                for (req, out) in planned {
                    let _ = req.reply.send(out.and(Err(err.clone())));
                }
            }
        }
    }
}

async fn single(
    store: &dyn Store,
    directory: &ArcSwap<Snapshot>,
    mut working: Snapshot,
    plan: &Plan,
    metrics: &Metrics,
) -> scim::Result<Vec<Change>> {
    let changes = plan(&working)?;
    if changes.is_empty() {
        return Ok(changes);
    }
    let started = std::time::Instant::now();
    store.commit(&changes).await.map_err(|e| store_error(&e))?;
    metrics.store_commit(started.elapsed(), 1);
    working.apply(&changes);
    directory.store(Arc::new(working));
    metrics.directory(&directory.load());
    Ok(changes)
}
