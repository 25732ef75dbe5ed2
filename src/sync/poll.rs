//! One poll loop per (connector, object): read the page after the stored cursor, apply
//! it through the engine (which stores the next cursor in the same batch), repeat.

use std::sync::Arc;
use std::time::Duration;

use revsync_sdk::{Connector, ConnectorError, LimitScope};
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use crate::engine::{Engine, Page};
use crate::status::{ConnectorState, StatusHub};

pub struct PollLoop {
    pub connector_id: String,
    pub object: String,
    pub connector: Arc<dyn Connector>,
    pub engine: Arc<Engine>,
    pub status: Arc<StatusHub>,
    pub interval: Duration,
    pub jitter_pct: u8,
    pub cancel: CancellationToken,
    /// Shared with the connector's dispatcher, which pushes only once every object it
    /// reads was read to its end in this run.
    pub caught_up: Arc<super::dispatch::CaughtUp>,
    /// The object's first complete read is known to be stored: no store call to ask again.
    pub backfilled: std::sync::atomic::AtomicBool,
    pub pauses: Arc<super::pause::Pauses>,
}

impl PollLoop {
    pub async fn run(self: Arc<Self>) {
        // Failed polls wait 1 s, doubling (jittered) up to four intervals, 5 minutes at most.
        let cap = (self.interval.max(Duration::from_secs(5)))
            .saturating_mul(4)
            .min(Duration::from_secs(300));
        let mut retry = Backoff::new(super::backoff::exponential(Duration::from_secs(1), cap));
        loop {
            if !self
                .pauses
                .wait(&self.connector_id, &self.status, &self.cancel)
                .await
            {
                return;
            }
            let wait = match self.poll_once().await {
                Ok(true) => {
                    retry.reset();
                    Duration::ZERO
                }
                Ok(false) => {
                    retry.reset();
                    jittered(self.interval, self.jitter_pct)
                }
                // Nothing of the page was applied: the next run reads it again.
                Err(ConnectorError::Cancelled) => return,
                Err(e) => {
                    let next = retry.failed().unwrap_or(cap);
                    self.on_error(&e, next)
                }
            };
            if !super::backoff::sleep(wait, &self.cancel).await {
                return;
            }
        }
    }

    /// One page; `Ok(true)` when more pages are ready now.
    async fn poll_once(&self) -> Result<bool, ConnectorError> {
        let (conn, obj) = (self.connector_id.as_str(), self.object.as_str());
        let engine = self.engine.clone();
        let (c, o) = (conn.to_owned(), obj.to_owned());
        let cursor = tokio::task::spawn_blocking(move || engine.cursor(&c, &o))
            .await
            .map_err(|e| ConnectorError::Transient(e.to_string()))?
            .map_err(|e| ConnectorError::Transient(format!("reading cursor: {e}")))?;
        self.status.update(conn, |s| {
            s.last_poll_at = Some(chrono::Utc::now());
            if !s.push_blocked {
                s.state = ConnectorState::Running;
            }
        });
        let read = self.connector.fetch(obj, cursor.as_deref());
        let fetched = revsync_sdk::Shutdown::new(self.cancel.clone())
            .read(read)
            .await?;
        // An idle poll of a frugal connector: nothing to apply and the cursor where it
        // was. The engine (its lock, a store write) is not bothered for nothing.
        if fetched.changes.is_empty()
            && fetched.rejected.is_empty()
            && fetched.invalid.is_empty()
            && fetched
                .cursor
                .as_ref()
                .is_none_or(|c| Some(c) == cursor.as_ref())
        {
            self.read_through(!fetched.more, fetched.behind).await;
            self.status.update(conn, |s| {
                s.last_success_at = Some(chrono::Utc::now());
                if !s.push_blocked {
                    s.state = ConnectorState::Idle;
                }
            });
            return Ok(fetched.more);
        }
        let n = fetched.changes.len();
        for bad in &fetched.invalid {
            tracing::warn!(connector = conn, object = obj, problem = %bad, "skipped an unreadable record");
        }
        let more = fetched.more;
        let complete = !more;
        let behind = fetched.behind;
        let page = Page {
            object: obj.to_owned(),
            changes: fetched.changes,
            cursor: fetched.cursor,
        };
        let engine = self.engine.clone();
        let c = conn.to_owned();
        let rejected = fetched.rejected;
        let kept = rejected.len() as u64;
        let report =
            tokio::task::spawn_blocking(move || engine.apply_rejecting(&c, page, &rejected))
                .await
                .map_err(|e| ConnectorError::Transient(e.to_string()))?
                .map_err(|e| ConnectorError::Transient(format!("applying a page: {e}")))?;
        self.read_through(complete, behind).await;
        for bad in &report.invalid {
            tracing::warn!(connector = conn, object = obj, problem = %bad, "skipped an invalid value");
        }
        let invalid = (fetched.invalid.len() + report.invalid.len()) as u64;
        self.status.update(conn, |s| {
            let again = report.replayed + report.echoed;
            s.records_in += (n - again.min(n)) as u64;
            s.records_reread += report.replayed as u64;
            s.records_echoed += report.echoed as u64;
            s.records_filtered += report.filtered as u64;
            s.last_success_at = Some(chrono::Utc::now());
            s.invalid_records += invalid;
            s.inbound_dead_letters += kept;
            if !s.push_blocked {
                s.state = ConnectorState::Idle;
            }
        });
        tracing::debug!(
            connector = conn,
            object = obj,
            records = n,
            created = report.created,
            updated = report.updated,
            merged = report.merged,
            enqueued = report.enqueued,
            "page applied"
        );
        Ok(more)
    }

    /// After a read that reached the end (`complete`): the first read to the end links
    /// every copy the system already holds, so from then on creating a record there cannot
    /// duplicate one of them. A system that holds its newest changes back (`behind`) has
    /// not served all of them yet: creates there wait until it has (`CaughtUp`).
    async fn read_through(&self, complete: bool, behind: bool) {
        if !complete {
            return;
        }
        self.caught_up.mark(&self.object, behind);
        let (object, behind) = (self.object.clone(), self.caught_up.behind(&self.object));
        self.status.update(&self.connector_id, |s| {
            s.held_back.retain(|o| *o != object);
            if behind {
                s.held_back.push(object);
            }
        });
        if self.backfilled.load(std::sync::atomic::Ordering::Relaxed) {
            self.note_read_through();
            return;
        }
        let (engine, c, o) = (
            self.engine.clone(),
            self.connector_id.clone(),
            self.object.clone(),
        );
        let stored = tokio::task::spawn_blocking(move || {
            if !engine.backfilled(&c, &o)? {
                engine.mark_backfilled(&c, &o)?;
            }
            Ok::<(), crate::engine::EngineError>(())
        })
        .await;
        if matches!(stored, Ok(Ok(()))) {
            self.backfilled
                .store(true, std::sync::atomic::Ordering::Relaxed);
            self.note_read_through();
        }
    }

    /// `/status` lists the object as read through (its past is in).
    fn note_read_through(&self) {
        let object = &self.object;
        self.status.update(&self.connector_id, |s| {
            if !s.read_through.contains(object) {
                s.read_through.push(object.clone());
            }
        });
    }

    /// Record the failure and say how long to wait before the next try: `backoff` unless
    /// the error says better (a quota's reset, a Retry-After).
    fn on_error(&self, e: &ConnectorError, backoff: Duration) -> Duration {
        let conn = self.connector_id.as_str();
        tracing::warn!(connector = conn, object = %self.object, error = %e, class = e.class(), "poll failed");
        let (state, wait) = match e {
            ConnectorError::Auth(_) => (ConnectorState::AuthFailed, Duration::from_secs(60)),
            ConnectorError::RateLimited {
                scope: scope @ (LimitScope::Daily | LimitScope::Reserve),
                retry_after,
            } => (
                super::dispatch::quota_state(*scope).0,
                retry_after.unwrap_or(Duration::from_secs(3600)),
            ),
            ConnectorError::RateLimited {
                retry_after: Some(d),
                ..
            } => (ConnectorState::BackingOff, *d),
            _ => (ConnectorState::BackingOff, backoff),
        };
        self.status.update(conn, |s| {
            s.state = state;
            s.errors.count += 1;
            s.errors.last_message = Some(format!("{}: {e}", self.object));
            s.errors.last_at = Some(chrono::Utc::now());
        });
        wait
    }
}

/// Exponential: 1 s, 2 s, 4 s ... capped at 5 minutes. Only the dispatcher's retry
/// timing still uses it, until its per-item policy (backon) replaces it.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(8)).min(Duration::from_secs(300))
}

/// `base` plus up to `pct` percent, so connectors do not poll in lockstep.
pub fn jittered(base: Duration, pct: u8) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut x = u64::from(nanos) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    // Saturating: the interval is range-checked, but no operator value may panic a clock.
    let millis = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
    let spread = millis.saturating_mul(u64::from(pct)) / 100;
    base.saturating_add(Duration::from_millis(
        x.checked_rem(spread.saturating_add(1)).unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CountingStore;
    use std::sync::atomic::Ordering;

    /// A system where nothing changes: every read is empty and leaves the cursor alone.
    struct Quiet;

    #[async_trait::async_trait]
    impl Connector for Quiet {
        fn capabilities(&self) -> revsync_sdk::Capabilities {
            revsync_sdk::Capabilities {
                objects: Vec::new(),
                batch_size: 1,
                webhooks: false,
            }
        }
        async fn fetch(
            &self,
            _object: &str,
            cursor: Option<&str>,
        ) -> Result<revsync_sdk::Fetched, ConnectorError> {
            Ok(revsync_sdk::Fetched {
                cursor: cursor.map(str::to_owned),
                ..Default::default()
            })
        }
        async fn fetch_by_ids(
            &self,
            _object: &str,
            _ids: &[String],
        ) -> Result<Vec<revsync_sdk::Change>, ConnectorError> {
            Ok(Vec::new())
        }
        async fn push(
            &self,
            _object: &str,
            _items: &[revsync_sdk::PushItem],
        ) -> Result<Vec<revsync_sdk::PushResult>, ConnectorError> {
            Ok(Vec::new())
        }
    }

    /// Issue 17: an idle poll costs the engine nothing, not a locked apply and a store
    /// write of the same cursor every interval. (The engine here maps no object, so any
    /// apply would fail.)
    #[tokio::test]
    async fn an_idle_poll_makes_no_store_write_after_the_first() {
        let store = Arc::new(CountingStore::default());
        let config = crate::config::Config {
            dir: std::path::PathBuf::from("."),
            daemon: crate::config::DaemonConfig::default(),
            connectors: Vec::new(),
            workflows: Default::default(),
        };
        let (m, p) = Engine::validate(&config).unwrap();
        let engine = Arc::new(
            Engine::new(store.clone(), &config, m, p, crate::engine::system_clock()).unwrap(),
        );
        let status = Arc::new(StatusHub::default());
        let poll = PollLoop {
            connector_id: "quiet".into(),
            object: "things".into(),
            connector: Arc::new(Quiet),
            engine,
            status,
            interval: Duration::from_secs(2),
            jitter_pct: 0,
            cancel: CancellationToken::new(),
            caught_up: Default::default(),
            backfilled: Default::default(),
            pauses: Arc::new(crate::sync::pause::Pauses::new(Default::default())),
        };
        assert!(!poll.poll_once().await.unwrap());
        let after_first = store.writes.load(Ordering::SeqCst);
        for _ in 0..5 {
            assert!(!poll.poll_once().await.unwrap());
        }
        assert_eq!(store.writes.load(Ordering::SeqCst), after_first);
    }

    #[test]
    fn jitter_stays_within_its_percentage() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(60), 10);
            assert!(
                d >= Duration::from_secs(60) && d <= Duration::from_secs(66),
                "{d:?}"
            );
        }
        assert_eq!(jittered(Duration::from_secs(5), 0), Duration::from_secs(5));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(30), Duration::from_secs(256));
    }

    #[test]
    fn jitter_on_a_huge_interval_saturates() {
        assert_eq!(jittered(Duration::MAX, 50), Duration::MAX);
        let d = Duration::from_secs(u64::MAX / 1000);
        assert!(jittered(d, 50) >= d);
    }
}
