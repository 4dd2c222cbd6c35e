//! The decision recorder: a bounded queue drained by one task that writes batches in single
//! transactions. When the store falls behind, the queue fills and `record` waits (backpressure)
//! rather than dropping records; the wait and the queue depth are counted. The one task is also
//! the one place this process's hash chain grows (`chain`), so the chain needs no lock.

use super::chain::{Chain, CHECKPOINT_EVERY};
use super::DecisionRecord;
use crate::metrics::Metrics;
use crate::model::ChainMark;
use crate::stamp::Signer;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Records queued before producers wait.
pub const QUEUE: usize = 65_536;
/// Most records per transaction.
pub const BATCH: usize = 2_000;

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<DecisionRecord>,
    metrics: Metrics,
}

impl Recorder {
    pub fn start(
        store: Arc<dyn Store>,
        metrics: Metrics,
        signer: Arc<Signer>,
    ) -> (Recorder, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(drain(rx, store, metrics.clone(), signer));
        (Recorder { tx, metrics }, task)
    }

    /// Queue one record, its fields bounded first ([`DecisionRecord::bounded`]: before the chain
    /// hashes it, so the hash covers what is stored); waits only when the queue is full.
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

async fn drain(mut rx: mpsc::Receiver<DecisionRecord>, store: Arc<dyn Store>, metrics: Metrics, signer: Arc<Signer>) {
    let (mut chain, start) = Chain::start(signer);
    tracing::info!(replica = chain.replica(), "decision log chain started");
    let mut marks = vec![start];
    let mut batch = Vec::with_capacity(BATCH);
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let open = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => n > 0,
            _ = tick.tick() => true,
        };
        chain.link(&mut batch);
        // Sign what is due, and everything when the queue closes (shutdown).
        if chain.due() || !open {
            marks.extend(chain.checkpoint());
        }
        if !batch.is_empty() || !marks.is_empty() {
            write(&*store, &metrics, &batch, &marks).await;
        }
        batch.clear();
        marks.clear();
        if !open {
            return;
        }
    }
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
