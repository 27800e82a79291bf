//! Background work each node runs: flushing buffered validation timestamps.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::AppState;

/// Starts the background loops; they stop when `stop` turns true.
pub fn spawn(state: AppState, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut flush = tokio::time::interval(Duration::from_secs(1));
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = flush.tick() => {
                    if let Err(e) = state.flush_touches().await {
                        tracing::warn!(error = %e, "could not record validation timestamps; will retry");
                    }
                }
                _ = stop.changed() => break,
            }
        }
    })
}
