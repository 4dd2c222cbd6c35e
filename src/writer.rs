//! The one write path for identity state: compute a change against the newest snapshot, make it
//! durable, then publish the new snapshot — in that order, so an acknowledged SCIM write is both
//! stored and visible to the very next admission request.
//!
//! A single task owns the snapshot. Requests queued while a commit is in flight are computed
//! against the snapshot that includes their predecessors and committed together in one
//! transaction (group commit: one fsync for many writes). If that combined commit fails on a
//! conflict, each request is retried alone so one bad write cannot fail its neighbours.
//!
//! With a shared store the same task also brings the snapshot up to date with other replicas'
//! commits (`sync`, `reload`), and plans every write inside the commit, with the store's sequence
//! locked, after applying what others committed first: no replica overwrites what it never saw,
//! and none starves behind a busier one.

use crate::directory::Snapshot;
use crate::freshness::Freshness;
use crate::metrics::Metrics;
use crate::store::{self, Change, Store};
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Computes the changes of one write from the current snapshot, or refuses it with the caller's
/// own error `E` (the SCIM service's, with its HTTP status). Called again on retry.
pub type Plan<E> = Box<dyn Fn(&Snapshot) -> Result<Vec<Change>, E> + Send + Sync>;

/// Why a write did not happen, when it is not the plan's refusal. The caller maps these to its
/// protocol (`From<Error>` for its error type).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("{0} already exists")]
    Unique(String),
    #[error("{0} was changed concurrently; retry")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
}

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 256;

enum Request<E> {
    Write {
        plan: Plan<E>,
        reply: oneshot::Sender<Result<Vec<Change>, E>>,
    },
    /// Catch up with the store (`full`: rebuild from scratch).
    Sync {
        full: bool,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

pub struct Writer<E> {
    tx: mpsc::Sender<Request<E>>,
    directory: Arc<ArcSwap<Snapshot>>,
    freshness: Arc<Freshness>,
}

impl<E> Clone for Writer<E> {
    fn clone(&self) -> Self {
        Writer {
            tx: self.tx.clone(),
            directory: self.directory.clone(),
            freshness: self.freshness.clone(),
        }
    }
}

fn unavailable(what: &str) -> Error {
    Error::Unavailable(what.to_string())
}

impl<E: From<Error> + Clone + Send + 'static> Writer<E> {
    /// Start the writer task over `store`, publishing into `directory`.
    pub fn start(
        store: Arc<dyn Store>,
        directory: Arc<ArcSwap<Snapshot>>,
        metrics: Metrics,
        freshness: Arc<Freshness>,
    ) -> Writer<E> {
        let (tx, rx) = mpsc::channel(4096);
        let task = Task {
            store,
            directory: directory.clone(),
            metrics,
            freshness: freshness.clone(),
            _error: std::marker::PhantomData,
        };
        tokio::spawn(task.run(rx));
        Writer {
            tx,
            directory,
            freshness,
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.directory.load_full()
    }

    /// A snapshot that includes every write acknowledged anywhere before this call: with a
    /// shared store it first catches up with the database (SCIM reads use it, so a read on one
    /// replica sees a write acknowledged by another).
    pub async fn current(&self) -> Result<Arc<Snapshot>, E> {
        if self.freshness.shared() {
            self.sync(false).await.map_err(|e| {
                tracing::warn!(error = %e, "could not catch up with the identity store");
                E::from(unavailable("the identity store is unavailable; retry later"))
            })?;
        }
        Ok(self.snapshot())
    }

    /// Catch up with the store now (`full`: rebuild the directory from it).
    pub async fn sync(&self, full: bool) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Sync { full, reply })
            .await
            .map_err(|_| "shutting down".to_string())?;
        rx.await.map_err(|_| "shutting down".to_string())?
    }

    /// Apply one write; returns the committed changes once they are durable and published.
    pub async fn write(&self, plan: Plan<E>) -> Result<Vec<Change>, E> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Write { plan, reply })
            .await
            .map_err(|_| E::from(unavailable("shutting down")))?;
        rx.await.map_err(|_| E::from(unavailable("shutting down")))?
    }
}

fn store_error(e: &store::Error) -> Error {
    match e {
        store::Error::Unique(what) => Error::Unique(what.clone()),
        store::Error::Version(what) => Error::Conflict(what.clone()),
        store::Error::Behind { .. } => unavailable("the directory is being rebuilt; retry"),
        other => {
            tracing::error!(error = %other, "identity store write failed");
            unavailable("the identity store is unavailable; retry later")
        }
    }
}

struct Task<E> {
    store: Arc<dyn Store>,
    directory: Arc<ArcSwap<Snapshot>>,
    metrics: Metrics,
    freshness: Arc<Freshness>,
    _error: std::marker::PhantomData<fn() -> E>,
}

type WriteRequest<E> = (Plan<E>, oneshot::Sender<Result<Vec<Change>, E>>);

impl<E: From<Error> + Clone + Send + 'static> Task<E> {
    async fn run(self, mut rx: mpsc::Receiver<Request<E>>) {
        let mut queued: Vec<Request<E>> = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut queued, MAX_BATCH).await > 0 {
            let mut writes: Vec<WriteRequest<E>> = Vec::with_capacity(queued.len());
            let mut syncs = Vec::new();
            let mut full = false;
            for r in queued.drain(..) {
                match r {
                    Request::Write { plan, reply } => writes.push((plan, reply)),
                    Request::Sync { full: f, reply } => {
                        full |= f;
                        syncs.push(reply);
                    }
                }
            }
            // One catch-up answers every sync queued before it started.
            if !syncs.is_empty() {
                let out = if full {
                    self.reload().await
                } else {
                    self.catch_up().await
                };
                let out = out.map_err(|e| e.to_string());
                for reply in syncs {
                    let _ = reply.send(out.clone());
                }
            }
            if !writes.is_empty() {
                self.write_batch(writes).await;
            }
        }
    }

    fn publish(&self, mut snapshot: Snapshot) {
        snapshot.published = Some(std::time::Instant::now());
        self.directory.store(Arc::new(snapshot));
        self.metrics.directory(&self.directory.load());
        self.freshness.synced();
    }

    /// Apply what other writers committed since the published snapshot.
    async fn catch_up(&self) -> store::Result<()> {
        let current = self.directory.load_full();
        // Usually nothing happened: one cheap read says so without opening a snapshot.
        if self.store.head().await? == current.seq {
            self.freshness.synced();
            return Ok(());
        }
        match self.store.changes_since(current.seq).await? {
            Some(delta) if delta.seq == current.seq => {
                self.freshness.synced();
                Ok(())
            }
            Some(delta) => {
                let mut next = (*current).clone();
                next.apply_delta(&delta);
                self.metrics.directory_caught_up(delta.puts.len() + delta.deletes.len());
                self.publish(next);
                Ok(())
            }
            // The change log no longer reaches back to our snapshot.
            None => self.reload().await,
        }
    }

    /// Rebuild the snapshot from the whole store.
    async fn reload(&self) -> store::Result<()> {
        let started = std::time::Instant::now();
        let loaded = self.store.load().await?;
        let mut next = Snapshot::from_loaded(loaded);
        next.generation = self.directory.load().generation + 1;
        tracing::info!(
            users = next.user_count(),
            groups = next.group_count(),
            agents = next.count(crate::model::ResourceType::Agent),
            seq = next.seq,
            millis = started.elapsed().as_millis() as u64,
            "directory resynchronised from the store"
        );
        self.metrics.directory_resync();
        self.publish(next);
        Ok(())
    }

    async fn write_batch(&self, batch: Vec<WriteRequest<E>>) {
        let published = self.directory.load_full();
        let mut working = (*published).clone();
        let mut outs: Vec<Result<Vec<Change>, E>> = Vec::new();
        let mut caught_up = 0;
        let started = std::time::Instant::now();
        // Planned inside the commit, with the store's sequence locked: whatever other replicas
        // committed first is applied before the plans run, so they never see a stale directory.
        let mut plan = |delta: store::Delta| {
            if delta.seq != working.seq {
                caught_up = delta.puts.len() + delta.deletes.len();
                working.apply_delta(&delta);
            }
            outs.clear();
            let mut all = Vec::new();
            for (plan, _) in &batch {
                let out = plan(&working);
                if let Ok(changes) = &out {
                    working.apply(changes);
                    all.extend(changes.iter().cloned());
                }
                outs.push(out);
            }
            all
        };
        let result = self.store.commit_with(published.seq, &mut plan).await;
        if caught_up > 0 {
            self.metrics.directory_caught_up(caught_up);
        }
        match result {
            Ok(seq) => {
                if seq != working.seq {
                    self.metrics.store_commit(started.elapsed(), batch.len());
                }
                working.seq = seq;
                self.publish(working);
                for ((_, reply), out) in batch.into_iter().zip(outs) {
                    let _ = reply.send(out);
                }
            }
            Err(store::Error::Behind { .. }) => {
                // The change log no longer reaches back to our snapshot: rebuild, then retry once.
                match self.reload().await {
                    Ok(()) => Box::pin(self.write_batch(batch)).await,
                    Err(e) => {
                        let err = E::from(store_error(&e));
                        for (_, reply) in batch {
                            let _ = reply.send(Err(err.clone()));
                        }
                    }
                }
            }
            Err(e) if batch.len() > 1 && matches!(e, store::Error::Unique(_) | store::Error::Version(_)) => {
                // Someone in the batch conflicts: redo each alone against the then-current state.
                for one in batch {
                    Box::pin(self.write_batch(vec![one])).await;
                }
            }
            Err(e) => {
                let err = E::from(store_error(&e));
                for ((_, reply), out) in batch.into_iter().zip(outs) {
                    let _ = reply.send(out.and(Err(err.clone())));
                }
            }
        }
    }
}
