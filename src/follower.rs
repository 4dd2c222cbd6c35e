//! Keeps this replica's directory following a shared store: it catches up on every commit
//! notification, polls in case one was missed, rebuilds from scratch periodically and whenever
//! the store comes back after a failure. The writer task does the catching up; this only says when.

use crate::config::Replication;
use crate::store::{FeedEvent, Store};
use crate::writer::Writer;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

enum Tick {
    Feed(crate::store::Result<FeedEvent>),
    Poll,
    Resync,
    Stop,
}

/// Runs until `shutdown`; returns at once for a store nobody else writes.
pub async fn follow<E: From<crate::writer::Error> + Clone + Send + 'static>(
    store: Arc<dyn Store>,
    writer: Writer<E>,
    r: Replication,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut poll = tokio::time::interval(r.poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resync = tokio::time::interval(r.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync.tick().await; // the first tick is immediate; the directory was just loaded
    let mut feed = None;
    let mut reachable = true;
    // Listening starts just after the directory was loaded: catching up covers that gap.
    let mut reconnect = false;
    loop {
        if feed.is_none() {
            match store.feed().await {
                Ok(Some(f)) => {
                    feed = Some(f);
                    // After a lost connection whatever was announced meanwhile is gone: start over.
                    let out = writer.sync(reconnect).await;
                    reconnect = true;
                    report(&mut reachable, out);
                }
                Ok(None) => return,
                Err(e) => report(&mut reachable, Err(e.to_string())),
            }
        }
        let tick = {
            let event = async {
                match feed.as_mut() {
                    Some(f) => f.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                e = event => Tick::Feed(e),
                _ = poll.tick() => Tick::Poll,
                _ = resync.tick() => Tick::Resync,
                _ = shutdown.changed() => Tick::Stop,
            }
        };
        let out = match tick {
            Tick::Stop => return,
            Tick::Feed(Ok(FeedEvent::Committed)) | Tick::Poll => writer.sync(false).await,
            Tick::Feed(Ok(FeedEvent::Reconnected)) | Tick::Resync => writer.sync(true).await,
            Tick::Feed(Err(e)) => Err(e.to_string()),
        };
        if out.is_err() {
            // The listener does not always notice a database that went away (seen with a fast
            // shutdown: it kept waiting). Any failure drops it, so that coming back means a new
            // listener and a full resync.
            feed = None;
        }
        report(&mut reachable, out);
        if feed.is_none() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Log when the store goes away and comes back, not every failed poll in between.
fn report(reachable: &mut bool, out: Result<(), String>) {
    match (out, *reachable) {
        (Ok(()), false) => {
            tracing::info!("identity store reachable again; directory caught up");
            *reachable = true;
        }
        (Err(e), true) => {
            tracing::warn!(error = %e, "identity store unreachable; answering from the last directory");
            *reachable = false;
        }
        _ => {}
    }
}
