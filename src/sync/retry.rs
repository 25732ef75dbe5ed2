//! How often, and how far apart, one failing item is tried again before it moves to the
//! dead-letter queue: one policy for outbox items and inbox groups (ADR 0002: backon).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::config::RetryConfig;

/// Exponential back-off with full jitter and an attempt cap, per item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::from(&RetryConfig::default())
    }
}

impl From<&RetryConfig> for RetryPolicy {
    fn from(c: &RetryConfig) -> Self {
        Self {
            max_attempts: c.max_attempts.max(1),
            min_delay: Duration::from_millis(c.min_delay_ms.max(1)),
            max_delay: Duration::from_secs(c.max_delay_secs.max(1)),
        }
    }
}

impl RetryPolicy {
    /// The wait before the next try of an item that has now failed `failures` times, or
    /// `None` once it has used all its attempts (then it is dead-lettered).
    pub fn after_failure(&self, failures: u32) -> Option<Duration> {
        if failures >= self.max_attempts {
            return None;
        }
        let step = usize::try_from(failures.saturating_sub(1)).unwrap_or(usize::MAX);
        ExponentialBuilder::new()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .without_max_times()
            .build()
            .nth(step)
            // Full jitter, but never sooner than the minimum: items that failed together
            // do not come back together, and nothing spins.
            .map(|d| self.min_delay.max(d.mul_f64(fastrand::f64())))
    }
}

/// `now` plus `wait` in the store's microseconds, saturating: a huge `Retry-After` means
/// "far away", never a time in the past.
pub fn at_after(now: i64, wait: Duration) -> i64 {
    now.saturating_add(i64::try_from(wait.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        }
    }

    #[test]
    fn the_cap_ends_the_retries() {
        let p = policy(3);
        assert!(p.after_failure(1).is_some());
        assert!(p.after_failure(2).is_some());
        assert_eq!(p.after_failure(3), None);
        assert_eq!(p.after_failure(u32::MAX), None);
    }

    #[test]
    fn delays_grow_and_stay_within_bounds() {
        let p = policy(100);
        for failures in 1..60 {
            let d = p.after_failure(failures).unwrap();
            assert!(d >= p.min_delay && d <= p.max_delay, "{failures}: {d:?}");
        }
        // The ceiling doubles: by the fifth failure the spread reaches 1.6 s.
        let late = (0..50).map(|_| p.after_failure(5).unwrap()).max().unwrap();
        assert!(late > Duration::from_millis(200), "{late:?}");
    }

    #[test]
    fn a_huge_wait_saturates_instead_of_wrapping() {
        assert_eq!(at_after(1_000, Duration::from_secs(u64::MAX)), i64::MAX);
        assert_eq!(at_after(i64::MAX - 1, Duration::from_secs(1)), i64::MAX);
        assert_eq!(at_after(5, Duration::from_micros(7)), 12);
    }
}
