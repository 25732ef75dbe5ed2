//! Error classes every connector reports, so the runtime can act on them uniformly.

use std::time::Duration;

/// The longest wait revsync accepts from an API (a `Retry-After`, a reset header, a
/// quota window). No documented limit resets later than daily; a longer stated wait is
/// a broken or hostile server, and honouring it as given would overflow a clock.
pub const MAX_UPSTREAM_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// A wait stated by an upstream server, held to [`MAX_UPSTREAM_WAIT`]. Every delay read
/// from the network goes through here before anything adds it to a clock.
pub fn upstream_wait(stated: Duration) -> Duration {
    stated.min(MAX_UPSTREAM_WAIT)
}

/// Which limit a rate-limit answer is about: a burst limit passes in seconds, a daily
/// quota in hours, and retrying against the latter only burns what others need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    Burst,
    Daily,
    /// The share of a quota revsync keeps for the other tools on the account is reached
    /// (Salesforce's daily allocation): revsync stops itself before the API would.
    Reserve,
}

/// A failed call, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    /// 429 or the API's equivalent. `retry_after` from the response when it said.
    #[error("rate limited ({scope:?}{})", .retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        retry_after: Option<Duration>,
        scope: LimitScope,
    },
    /// Timeouts, connection failures, 5xx: retry with backoff.
    #[error("transient failure: {0}")]
    Transient(String),
    /// 401 or revoked credentials: pause the connector, surface it; retrying won't help.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The request itself is wrong (400, 422, validation): dead-letter it with the response.
    #[error("rejected: {detail}")]
    Permanent {
        detail: String,
        status: Option<u16>,
        body: Option<String>,
    },
    #[error("not found")]
    NotFound,
    /// Shutdown started before the call was sent (or sent again): nothing reached the
    /// system, and the caller leaves its work queued for the next run.
    #[error("interrupted by shutdown")]
    Cancelled,
}

impl ConnectorError {
    /// Whether the same request may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ConnectorError::Transient(_)
                | ConnectorError::RateLimited {
                    scope: LimitScope::Burst,
                    ..
                }
        )
    }

    /// The same error with any stated wait held to [`MAX_UPSTREAM_WAIT`].
    pub fn with_upstream_wait(self) -> Self {
        match self {
            ConnectorError::RateLimited { retry_after, scope } => ConnectorError::RateLimited {
                retry_after: retry_after.map(upstream_wait),
                scope,
            },
            other => other,
        }
    }

    /// A stable name for metrics and `/status`.
    pub fn class(&self) -> &'static str {
        match self {
            ConnectorError::RateLimited { .. } => "rate_limited",
            ConnectorError::Transient(_) => "transient",
            ConnectorError::Auth(_) => "auth",
            ConnectorError::Permanent { .. } => "permanent",
            ConnectorError::NotFound => "not_found",
            ConnectorError::Cancelled => "cancelled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_and_burst_limits_are_retried() {
        assert!(ConnectorError::Transient("timeout".into()).is_retryable());
        let burst = ConnectorError::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
            scope: LimitScope::Burst,
        };
        assert!(burst.is_retryable());
        assert_eq!(burst.to_string(), "rate limited (Burst, retry after 2s)");
        let daily = ConnectorError::RateLimited {
            retry_after: None,
            scope: LimitScope::Daily,
        };
        assert!(!daily.is_retryable());
        assert!(!ConnectorError::Auth("401".into()).is_retryable());
        assert!(!ConnectorError::Permanent {
            detail: "bad".into(),
            status: Some(400),
            body: None
        }
        .is_retryable());
    }
}
