//! The daemon's shutdown as a connector sees it.
//!
//! A connector waits for many things that are not its own work: a permit of the account's
//! budget, a pause an API asked for, the back-off before a retry, a slot for a bulk job.
//! None of them may hold the process once shutdown starts (issue 17): each goes through
//! [`Shutdown::wait`], which ends it at once with [`ConnectorError::Cancelled`]. The work
//! itself stays where it was (in the outbox, behind the cursor), so nothing is lost.
//! An exchange already on the wire is not cut: it may be a write the system is applying.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::ConnectorError;

/// A handle on the daemon's shutdown. Cheap to clone; [`Shutdown::default`] never fires
/// (tests, tools that build a connector outside the daemon).
#[derive(Debug, Clone, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    /// Fires when `token` is cancelled.
    pub fn new(token: CancellationToken) -> Self {
        Self(token)
    }

    pub fn has_started(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Run `waiting` unless shutdown starts first. Only for futures that may be dropped
    /// part way without leaving anything half done: waits, reads.
    pub async fn wait<F: Future>(&self, waiting: F) -> Result<F::Output, ConnectorError> {
        tokio::select! {
            // Checked first, so a wait begun after shutdown does not run even once.
            biased;
            () = self.0.cancelled() => Err(ConnectorError::Cancelled),
            out = waiting => Ok(out),
        }
    }

    /// Sleep for `d`, or less when shutdown starts.
    pub async fn sleep(&self, d: Duration) -> Result<(), ConnectorError> {
        self.wait(tokio::time::sleep(d)).await
    }

    /// A call that only reads, dropped when shutdown starts, exchange on the wire and
    /// all: nothing it read was applied yet, so the next run reads it again.
    pub async fn read<T, F>(&self, call: F) -> Result<T, ConnectorError>
    where
        F: Future<Output = Result<T, ConnectorError>>,
    {
        self.wait(call).await.and_then(|read| read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_when_shutdown_starts_and_not_before() {
        let token = CancellationToken::new();
        let shutdown = Shutdown::new(token.clone());
        assert_eq!(shutdown.sleep(Duration::from_secs(1)).await, Ok(()));
        let waiting = tokio::spawn({
            let s = shutdown.clone();
            async move { s.sleep(Duration::from_secs(3600)).await }
        });
        tokio::task::yield_now().await;
        token.cancel();
        assert_eq!(waiting.await.unwrap(), Err(ConnectorError::Cancelled));
        assert!(shutdown.has_started());
        // Once started, a new wait does not begin, even a ready one.
        assert_eq!(
            shutdown.wait(std::future::ready(())).await,
            Err(ConnectorError::Cancelled)
        );
        assert!(!Shutdown::default().has_started());
    }
}
