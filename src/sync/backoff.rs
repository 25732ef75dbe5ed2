//! The one retry policy of the runtime's loops (ADR 0002): backon's exponential backoff
//! with jitter and a cap, and waits that end at once when shutdown starts.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

/// Delays from `min`, doubling up to `max`, each plus a random part of itself (so loops
/// that failed together do not retry together), for as long as they are asked for.
pub fn exponential(min: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(min)
        .with_max_delay(max.max(min))
        .without_max_times()
}

/// The delays of one run of failures: `failed` after each failure, `reset` after a success.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: <ExponentialBuilder as BackoffBuilder>::Backoff,
    failures: usize,
    max_failures: Option<usize>,
}

impl Backoff {
    pub fn new(builder: ExponentialBuilder) -> Self {
        Self {
            builder,
            delays: builder.build(),
            failures: 0,
            max_failures: None,
        }
    }

    /// Give up (`failed` answers `None`) after `n` failures in a row.
    pub fn at_most(mut self, n: usize) -> Self {
        self.max_failures = Some(n);
        self
    }

    /// The wait after one more failure, or `None` once the allowed failures are used up.
    pub fn failed(&mut self) -> Option<Duration> {
        self.failures += 1;
        if self.max_failures.is_some_and(|m| self.failures > m) {
            return None;
        }
        self.delays.next()
    }

    pub fn failures(&self) -> usize {
        self.failures
    }

    pub fn reset(&mut self) {
        self.delays = self.builder.build();
        self.failures = 0;
    }
}

/// Sleep for `d` unless shutdown starts first; false when it did.
pub async fn sleep(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_with_jitter_up_to_the_cap_and_start_over_after_a_success() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(8));
        let mut b = Backoff::new(exponential(min, max));
        let delays: Vec<Duration> = (0..8).map(|_| b.failed().unwrap()).collect();
        for (i, d) in delays.iter().enumerate() {
            let base = (min * 2u32.pow(i as u32)).min(max);
            assert!(*d >= base && *d <= base * 2, "failure {i}: {d:?}");
        }
        b.reset();
        assert!(b.failed().unwrap() < Duration::from_secs(2));
        let mut capped = Backoff::new(exponential(min, max)).at_most(2);
        assert!(capped.failed().is_some() && capped.failed().is_some());
        assert_eq!(capped.failed(), None);
        assert_eq!(capped.failures(), 3);
    }

    #[tokio::test]
    async fn a_wait_ends_at_once_on_shutdown() {
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let waited = tokio::spawn(async move { sleep(Duration::from_secs(3600), &c).await });
        tokio::task::yield_now().await;
        cancel.cancel();
        assert!(!waited.await.unwrap());
        assert!(sleep(Duration::from_millis(5), &CancellationToken::new()).await);
    }
}
