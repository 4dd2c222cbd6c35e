//! The decision recorder: a bounded queue drained by one task that writes batches in single
//! transactions. When the store falls behind, the queue fills and `record` waits (backpressure)
//! rather than dropping records; the wait and the queue depth are counted.

use super::DecisionRecord;
use crate::metrics::Metrics;
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
    pub fn start(store: Arc<dyn Store>, metrics: Metrics) -> (Recorder, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(drain(rx, store, metrics.clone()));
        (Recorder { tx, metrics }, task)
    }

    /// Queue one record; waits only when the queue is full.
    pub async fn record(&self, r: DecisionRecord) {
        match self.tx.try_send(r) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(r)) => {
                self.metrics.decision_backpressure();
                let _ = self.tx.send(r).await;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.metrics.decisions_lost(1),
        }
    }
}

async fn drain(mut rx: mpsc::Receiver<DecisionRecord>, store: Arc<dyn Store>, metrics: Metrics) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        // Retry a failing store rather than lose acknowledged decisions; the queue absorbs the wait.
        let mut delay = Duration::from_millis(100);
        loop {
            match store.record_decisions(&batch).await {
                Ok(()) => {
                    metrics.decisions_recorded(batch.len());
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, records = batch.len(), "recording decisions failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        batch.clear();
    }
}
