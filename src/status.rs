//! Live per-connector state, shared by the sync tasks (writers) and `/status` (reader).

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorState {
    /// Configured, its task not yet started.
    Starting,
    /// Started, nothing to do right now.
    Idle,
    Running,
    BackingOff,
    AuthFailed,
    Paused,
    /// The share of the API quota kept for other tools is reached; resumes when usage falls.
    QuotaReserveReached,
    Disabled,
    Stopped,
}

impl ConnectorState {
    pub const ALL: [ConnectorState; 9] = [
        ConnectorState::Starting,
        ConnectorState::Idle,
        ConnectorState::Running,
        ConnectorState::BackingOff,
        ConnectorState::AuthFailed,
        ConnectorState::Paused,
        ConnectorState::QuotaReserveReached,
        ConnectorState::Disabled,
        ConnectorState::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorState::Starting => "starting",
            ConnectorState::Idle => "idle",
            ConnectorState::Running => "running",
            ConnectorState::BackingOff => "backing_off",
            ConnectorState::AuthFailed => "auth_failed",
            ConnectorState::Paused => "paused",
            ConnectorState::QuotaReserveReached => "quota_reserve_reached",
            ConnectorState::Disabled => "disabled",
            ConnectorState::Stopped => "stopped",
        }
    }

    /// Whether a connector in this state counts as started for `/readyz`.
    pub fn is_started(self) -> bool {
        !matches!(self, ConnectorState::Starting)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ErrorSummary {
    pub count: u64,
    pub last_message: Option<String>,
    pub last_at: Option<DateTime<Utc>>,
}

/// The API account's rate limiter, as `/status` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RateLimitStatus {
    /// Configured budget: `requests` per `per_secs`.
    pub requests: u32,
    pub per_secs: f64,
    pub requests_sent: u64,
    /// Rate-limit answers met (429 or the API's equivalent).
    pub throttled: u64,
    /// How long requests are currently held back (a Retry-After pause), in ms.
    pub current_wait_ms: u64,
}

/// An API's allowance as its last answer stated it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApiQuota {
    pub remaining: u64,
    pub limit: u64,
    pub window: &'static str,
}

/// Counts of a growing total over the last minute, from samples taken as it grows.
#[derive(Debug, Default)]
pub struct PerMinute {
    samples: std::collections::VecDeque<(std::time::Instant, u64)>,
}

impl PerMinute {
    /// Record `total` at `now`; how much it grew in the minute before.
    pub fn observe(&mut self, now: std::time::Instant, total: u64) -> u64 {
        let minute = std::time::Duration::from_secs(60);
        // Keep the newest sample at least a minute old as the baseline.
        while self
            .samples
            .get(1)
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= minute)
        {
            self.samples.pop_front();
        }
        self.samples.push_back((now, total));
        let base = self.samples.front().map_or(total, |(_, n)| *n);
        total.saturating_sub(base)
    }
}

/// A full re-read in progress (or finished) for one object.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ResyncProgress {
    pub object: String,
    pub pages: u64,
    pub records: u64,
    pub done: bool,
    pub error: Option<String>,
    /// The objects of this resync already re-read, in order.
    pub completed: Vec<ResyncDone>,
}

/// One object a resync has re-read to its end.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ResyncDone {
    pub object: String,
    pub pages: u64,
    pub records: u64,
}

/// What a `dry_run` connector would write, were it not in a dry run.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct WouldWrite {
    /// Writes waiting, one per record, object and operation (as pushes coalesce them).
    pub total: u64,
    /// The newest of them, newest first, one per copy written: ids and field names only,
    /// never values (`/status` may be public; `revsync plan` shows values).
    pub newest: Vec<PlannedWrite>,
}

/// One write a dry run holds back.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PlannedWrite {
    pub object: String,
    /// `create`, `update` or `delete`.
    pub operation: &'static str,
    /// The copy written to; none for a create.
    pub external_id: Option<String>,
    /// The canonical record.
    pub record: uuid::Uuid,
    /// The system's fields the write changes: for a create every field it sets; for an
    /// update those whose value differs from the copy as the system answers now; none
    /// (`null`) when that read failed.
    pub fields: Option<Vec<String>>,
}

/// One connector's entry on `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorStatus {
    pub id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub state: ConnectorState,
    pub objects: Vec<String>,
    pub last_poll_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// Seconds since the last successful read or push.
    pub lag_secs: Option<u64>,
    /// Changes read that were new to revsync.
    pub records_in: u64,
    /// Reports read again with nothing new (overlap windows, events delivered twice).
    pub records_reread: u64,
    /// Revsync's own writes read back (a poll sees every write once), nothing new.
    pub records_echoed: u64,
    /// Records read that are outside their object's `filter:`, so not brought in.
    pub records_filtered: u64,
    /// The connector's `dry_run`: it writes nothing; `would_write` is what it would.
    pub dry_run: bool,
    /// With `dry_run`: the writes its outbox holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_write: Option<WouldWrite>,
    pub records_out: u64,
    /// Edits found in this system by the read before an update, made since its last poll:
    /// applied first, so the update did not write over them.
    pub edits_read_before_push: u64,
    /// Records or values skipped because the source sent something unreadable.
    pub invalid_records: u64,
    pub errors: ErrorSummary,
    pub outbox_depth: u64,
    pub dead_letters: u64,
    /// Records or events from this system that could not be brought in, kept with their
    /// raw body for `revsync dlq list` / `replay` (outbound ones are `dead_letters`).
    pub inbound_dead_letters: u64,
    pub restarts: u64,
    /// Webhook events accepted (durably stored) and refused.
    pub webhooks_accepted: u64,
    pub webhooks_rejected: u64,
    /// Why the connector is not syncing, when it is not.
    pub note: Option<String>,
    pub resync: Option<ResyncProgress>,
    pub rate_limit: Option<RateLimitStatus>,
    /// Requests sent to the system's API since start (the account limiter's permits:
    /// retries included, token requests not), and in the last minute.
    pub api_requests: u64,
    pub api_requests_last_minute: u64,
    /// What the API says is left of its documented allowance, where it says so.
    pub api_quota: Option<ApiQuota>,
    /// What the connector itself reports (e.g. a full re-read after an expired cursor).
    pub notices: Vec<String>,
    /// Objects read to their end whose system still holds its newest changes back
    /// (Zendesk's exports keep the last minute): a record made there just before may not
    /// be read yet. Empty once every object was served in full since start.
    pub held_back: Vec<String>,
    /// Objects whose first read to the end (their past, the first sync) is done and kept:
    /// what is read from them now is live change, on which workflow rules run.
    pub read_through: Vec<String>,
    /// Pushes are held back (auth or quota) while reads may still work: a successful
    /// read must not report the connector healthy.
    #[serde(skip)]
    pub push_blocked: bool,
}

impl ConnectorStatus {
    pub fn new(id: &str, type_name: &str, objects: Vec<String>, enabled: bool) -> Self {
        Self {
            id: id.to_owned(),
            type_name: type_name.to_owned(),
            state: if enabled {
                ConnectorState::Starting
            } else {
                ConnectorState::Disabled
            },
            objects,
            last_poll_at: None,
            last_success_at: None,
            lag_secs: None,
            records_in: 0,
            records_reread: 0,
            records_echoed: 0,
            records_filtered: 0,
            held_back: Vec::new(),
            read_through: Vec::new(),
            dry_run: false,
            would_write: None,
            records_out: 0,
            edits_read_before_push: 0,
            invalid_records: 0,
            errors: ErrorSummary::default(),
            outbox_depth: 0,
            dead_letters: 0,
            inbound_dead_letters: 0,
            restarts: 0,
            webhooks_accepted: 0,
            webhooks_rejected: 0,
            note: None,
            resync: None,
            rate_limit: None,
            api_requests: 0,
            api_requests_last_minute: 0,
            api_quota: None,
            notices: Vec::new(),
            push_blocked: false,
        }
    }
}

/// The table of connector statuses.
#[derive(Debug, Default)]
pub struct StatusHub {
    connectors: RwLock<BTreeMap<String, ConnectorStatus>>,
}

impl StatusHub {
    pub fn register(&self, status: ConnectorStatus) {
        self.connectors
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(status.id.clone(), status);
    }

    /// Change one connector's entry; unknown ids are ignored.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut ConnectorStatus)) {
        if let Some(s) = self
            .connectors
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(id)
        {
            f(s);
        }
    }

    pub fn set_state(&self, id: &str, state: ConnectorState) {
        self.update(id, |s| s.state = state);
    }

    pub fn snapshot(&self) -> Vec<ConnectorStatus> {
        self.connectors
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/status` is display: one panicking update must not take it (and every task that
    /// reports into it) down with a poisoned lock.
    #[test]
    fn a_panicking_update_leaves_the_status_usable() {
        let hub = StatusHub::default();
        hub.register(ConnectorStatus::new("a", "hubspot", vec![], true));
        let panicked = std::panic::catch_unwind(|| hub.update("a", |_| panic!("bug")));
        assert!(panicked.is_err());
        hub.set_state("a", ConnectorState::Idle);
        assert!(hub.snapshot()[0].state.is_started());
    }

    #[test]
    fn per_minute_counts_the_growth_of_the_last_minute() {
        let t0 = std::time::Instant::now();
        let at = |s: u64| t0 + std::time::Duration::from_secs(s);
        let mut m = PerMinute::default();
        assert_eq!(m.observe(at(0), 100), 0);
        assert_eq!(m.observe(at(30), 104), 4);
        assert_eq!(m.observe(at(60), 108), 8);
        assert_eq!(m.observe(at(90), 112), 8);
        assert_eq!(m.observe(at(200), 112), 0);
    }

    #[test]
    fn disabled_connectors_count_as_started() {
        let hub = StatusHub::default();
        hub.register(ConnectorStatus::new("a", "hubspot", vec![], true));
        hub.register(ConnectorStatus::new("b", "stripe", vec![], false));
        let snap = hub.snapshot();
        assert!(!snap[0].state.is_started());
        assert!(snap[1].state.is_started());
        hub.set_state("a", ConnectorState::Idle);
        assert!(hub.snapshot()[0].state.is_started());
    }
}
