//! Restart a connector's task when it panics, with backoff, leaving the others untouched.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::backoff::{exponential, sleep, Backoff};
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
    // 1 s, doubling (jittered) to about a minute: a task that keeps panicking is not spun.
    let mut retry = Backoff::new(exponential(Duration::from_secs(1), Duration::from_secs(64)));
    loop {
        let handle = tokio::spawn(make());
        match handle.await {
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                let delay = retry.failed().unwrap_or(Duration::from_secs(64));
                tracing::error!(task = %name, connector = %connector, restarts = retry.failures(), delay_ms = delay.as_millis() as u64, "task panicked; restarting");
                status.update(&connector, |s| {
                    s.restarts += 1;
                    s.state = ConnectorState::BackingOff;
                    s.errors.count += 1;
                    s.errors.last_message = Some(format!("{name} panicked; restarted"));
                    s.errors.last_at = Some(chrono::Utc::now());
                });
                if !sleep(delay, &cancel).await {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}
