//! The decision recorder: a bounded queue drained by one task that writes batches in single
//! transactions. When the store falls behind, the queue fills and `record` waits (backpressure)
//! rather than dropping records; the wait and the queue depth are counted. The one task is also
//! the one place this process's hash chain grows (`chain`), so the chain needs no lock. Each
//! mark is published as an anchor (a log line, and for checkpoints the metric) once it is
//! durable: an anchor must never name what a crash kept from the store.

use super::chain::{Chain, CHECKPOINT_EVERY};
use super::DecisionRecord;
use crate::metrics::Metrics;
use crate::model::ChainMark;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Records queued before producers wait.
pub const QUEUE: usize = 65_536;
/// Most records per transaction.
pub const BATCH: usize = 2_000;
/// How long the drain waits after the first record of a batch for more to join it. The embedded
/// store commits with an fsync (`synchronous = FULL`): without the wait, a steady trickle of
/// requests (one API-server connection, one request at a time) is one fsync'd transaction per
/// request, and the store's thread competes with admission for the CPU. Records are not
/// acknowledged to anyone before they are written, so the wait widens no promise; it delays the
/// record's appearance in `audit query` by at most this much.
pub const LINGER: Duration = Duration::from_millis(10);

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<DecisionRecord>,
    metrics: Metrics,
}

impl Recorder {
    /// Record into `chain`, started by [`Chain::start`] (which may seal the records from before
    /// the chains: done before serving, so sealing a large old log delays readiness once rather
    /// than stalling admission behind a full queue); `marks` are its first marks.
    pub fn start(
        store: Arc<dyn Store>,
        metrics: Metrics,
        chain: Chain,
        marks: Vec<ChainMark>,
    ) -> (Recorder, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(drain(rx, store, metrics.clone(), chain, marks));
        (Recorder { tx, metrics }, task)
    }

    /// Queue one record, its fields bounded first ([`DecisionRecord::bounded`]: before the chain
    /// hashes it, so the hash covers what is stored); waits only when the queue is full.
    /// Queue a record of scimgate's own bulk work (the access reconciler's): first wait, while
    /// the queue is more than half full, so a burst of them never fills it and keeps admission's
    /// records — whose webhooks wait on them — waiting.
    pub async fn record_beside_admission(&self, r: DecisionRecord) {
        while self.tx.capacity() < QUEUE / 2 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        self.record(r).await;
    }

    pub async fn record(&self, r: DecisionRecord) {
        match self.tx.try_send(r.bounded()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(r)) => {
                self.metrics.decision_backpressure();
                let _ = self.tx.send(r).await;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.metrics.decisions_lost(1),
        }
    }
}

async fn drain(
    mut rx: mpsc::Receiver<DecisionRecord>,
    store: Arc<dyn Store>,
    metrics: Metrics,
    mut chain: Chain,
    mut marks: Vec<ChainMark>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let open = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => n > 0,
            _ = tick.tick() => true,
        };
        let open = open && (batch.is_empty() || batch.len() >= BATCH || gather(&mut rx, &mut batch).await);
        chain.link(&mut batch);
        // Sign what is due, and everything when the queue closes (shutdown).
        if chain.due() || !open {
            marks.extend(chain.checkpoint(&*store).await);
        }
        if !batch.is_empty() || !marks.is_empty() {
            write(&*store, &metrics, &batch, &marks).await;
            for m in &marks {
                super::chain::publish(m);
                if m.kind == "checkpoint" {
                    metrics.decision_log_checkpoint(&m.replica, m.seq, &m.hash);
                }
            }
        }
        batch.clear();
        marks.clear();
        if !open {
            return;
        }
    }
}

/// Wait [`LINGER`], then take what has queued meanwhile, up to [`BATCH`]. Sleeping rather than
/// receiving: a sender wakes nobody while the drain sleeps. False when the queue closed.
async fn gather(rx: &mut mpsc::Receiver<DecisionRecord>, batch: &mut Vec<DecisionRecord>) -> bool {
    tokio::time::sleep(LINGER).await;
    while batch.len() < BATCH {
        match rx.try_recv() {
            Ok(r) => batch.push(r),
            Err(mpsc::error::TryRecvError::Empty) => return true,
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
        }
    }
    true
}

/// Retry a failing store rather than lose acknowledged decisions; the queue absorbs the wait.
async fn write(store: &dyn Store, metrics: &Metrics, batch: &[DecisionRecord], marks: &[ChainMark]) {
    let mut delay = Duration::from_millis(100);
    loop {
        match store.record_decisions(batch, marks).await {
            Ok(()) => {
                metrics.decisions_recorded(batch.len());
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, records = batch.len(), "recording decisions failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
