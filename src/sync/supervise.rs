//! Restart a connector's task when it panics, with backoff, leaving the others untouched.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::status::{ConnectorState, StatusHub};

/// Run `make()`'s future until it returns (on cancellation); if it panics, count a
/// restart on the connector's status and start it again after a growing delay.
pub async fn supervise<F, Fut>(
    name: String,
    connector: String,
    status: Arc<StatusHub>,
    cancel: CancellationToken,
    make: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut failures = 0u32;
    loop {
        let handle = tokio::spawn(make());
        match handle.await {
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                failures += 1;
                let delay = Duration::from_secs(1u64 << failures.min(6));
                tracing::error!(task = %name, connector = %connector, restarts = failures, delay_secs = delay.as_secs(), "task panicked; restarting");
                status.update(&connector, |s| {
                    s.restarts += 1;
                    s.state = ConnectorState::BackingOff;
                    s.errors.count += 1;
                    s.errors.last_message = Some(format!("{name} panicked; restarted"));
                    s.errors.last_at = Some(chrono::Utc::now());
                });
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(_) => return,
        }
    }
}
