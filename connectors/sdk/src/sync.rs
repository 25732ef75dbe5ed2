//! The connector contract the sync runtime drives: read pages, push batches, verify
//! webhooks. A connector is mostly mapping and API shape; retries, rate limits, the
//! outbox and dead letters are the runtime's job.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::ConnectorError;
use crate::model::{Change, Kind};

/// What a connector can do, declared once.
#[derive(Debug, Clone)]
pub struct Capabilities {
    pub objects: Vec<ObjectCapability>,
    /// Largest number of records one push call takes (HubSpot 100, Salesforce 200).
    pub batch_size: usize,
    pub webhooks: bool,
}

#[derive(Debug, Clone)]
pub struct ObjectCapability {
    pub name: String,
    pub kind: Kind,
    pub read: bool,
    pub write: bool,
}

/// One page read from a system.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub changes: Vec<Change>,
    /// Where the next read starts; stored with the page, never ahead of it.
    pub cursor: Option<String>,
    /// More pages are ready now (read on without waiting for the next interval).
    pub more: bool,
    /// The read is at the end of what the system serves now, but the system holds back
    /// its newest changes (Zendesk's exports never serve the last minute), which may
    /// include records it held before this process began reading. Until a read says
    /// otherwise, the object is not caught up: revsync writes nothing there, so it never
    /// creates a second copy of a record it has not seen yet.
    pub behind: bool,
    /// Records the connector could not read, each with a reason; counted, the rest goes on.
    pub invalid: Vec<String>,
    /// Those of them the system sent as a record, with its raw body: the runtime keeps
    /// them as inbound dead letters (in the same write as the page) to see and replay.
    pub rejected: Vec<Rejected>,
}

impl Fetched {
    /// A record of `object` that could not be decoded: counted with `invalid`, and kept
    /// with its raw body and id (`id` or `Id`, when it has one).
    pub fn reject(&mut self, object: &str, raw: &serde_json::Value, error: String) {
        self.rejected
            .push(Rejected::new(object, raw, error.clone()));
        self.invalid.push(error);
    }
}

/// A record a connector read but could not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub object: String,
    /// The system's id for it, when the body names one: replay reads it again by id.
    pub external_id: Option<String>,
    /// The record as the system sent it (JSON text).
    pub raw: String,
    pub error: String,
}

impl Rejected {
    pub fn new(object: &str, raw: &serde_json::Value, error: String) -> Self {
        let id = ["id", "Id"].iter().find_map(|k| match raw.get(k)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        Self {
            object: object.to_owned(),
            external_id: id,
            raw: raw.to_string(),
            error,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOp {
    /// Carries the canonical id, which the connector must send as the target's external
    /// id, unique property or idempotency key: a retried create never duplicates.
    Create {
        canonical_id: Uuid,
    },
    Update {
        external_id: String,
    },
    Delete {
        external_id: String,
    },
}

/// One record to write, in the system's own field names.
#[derive(Debug, Clone, PartialEq)]
pub struct PushItem {
    pub op: PushOp,
    pub fields: BTreeMap<String, serde_json::Value>,
    /// Distinguishes retries of the same version from a new version (idempotency keys).
    pub version: u64,
}

/// The outcome of one item of a batch: its id in the system, or why it failed.
pub type PushResult = Result<String, ConnectorError>;

/// A connector's cursor as the text the runtime stores. A cursor of plain fields always
/// serializes; if one ever did not, the page is refused rather than the daemon stopped.
pub fn cursor_text<T: serde::Serialize>(cursor: &T) -> Result<String, ConnectorError> {
    serde_json::to_string(cursor).map_err(|e| ConnectorError::Permanent {
        detail: format!("cursor does not serialize: {e}"),
        status: None,
        body: None,
    })
}

/// What a record read said, as a number that stays the same across runs (FNV-1a over its
/// JSON): a read state keeps it for the records it handed out in a window it will search
/// again, so one found there unchanged is not handed out twice, while one edited again
/// within the same timestamp is.
pub fn fingerprint<T: serde::Serialize + ?Sized>(what: &T) -> u64 {
    let text = serde_json::to_string(what).unwrap_or_default();
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h: u64, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Records `result` as the answer for item `index` of a batch. An index outside the batch
/// (a connector bug) is dropped rather than a panic: the item then reads as unanswered,
/// which every connector reports as retryable.
pub fn answer(out: &mut [Option<PushResult>], index: usize, result: PushResult) {
    if let Some(slot) = out.get_mut(index) {
        *slot = Some(result);
    }
}

/// An inbound webhook request, as received.
#[derive(Debug, Clone)]
pub struct WebhookRequest<'a> {
    pub method: &'a str,
    /// The full URI the sender signed (scheme, host, path and query).
    pub uri: &'a str,
    /// Header names lowercased.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    pub received_at: DateTime<Utc>,
}

impl WebhookRequest<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a webhook was refused; nothing of it is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// 401: missing or wrong signature.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// 401: signed too long ago (or in the future): a replay.
    #[error("stale timestamp: {0}")]
    Stale(String),
    /// 400: not the shape this system sends.
    #[error("malformed body: {0}")]
    Malformed(String),
}

/// A protocol-specific answer to an accepted webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAck {
    pub content_type: &'static str,
    pub body: String,
}

/// What a verified webhook says happened.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    /// The sender's event id: an event delivered twice is applied once.
    pub id: String,
    pub object: String,
    pub inbound: Inbound,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// The record's new state, as the event carried it.
    Change(Change),
    /// Only an id: fetch the record.
    Hint { external_id: String },
}

/// An API's own account of its allowance, as its last answer stated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLeft {
    pub remaining: u64,
    pub limit: u64,
    /// The window the allowance is for (`day`, `minute`, ...).
    pub window: &'static str,
}

/// A connected system. Object-safe: the daemon holds `Arc<dyn Connector>`.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    fn capabilities(&self) -> Capabilities;

    /// Read the page after `cursor` (`None`: from the beginning).
    async fn fetch(&self, object: &str, cursor: Option<&str>) -> Result<Fetched, ConnectorError>;

    /// Read these records now (webhook hints, repairs).
    async fn fetch_by_ids(
        &self,
        object: &str,
        ids: &[String],
    ) -> Result<Vec<Change>, ConnectorError>;

    /// Whether [`Connector::fetch_by_ids`] stamps each copy with the system's own time of
    /// its last change. Only then does the dispatcher read copies before updating them
    /// (an edit made since the last poll is applied, not written over): a read stamped
    /// with the time of reading would win over every newer value revsync holds.
    fn reads_by_id_carry_modified_times(&self) -> bool {
        false
    }

    /// Whether a create pushed to `object` finds a copy the system already holds (an
    /// upsert on a natural key: an email, a unique name) instead of making a second one.
    /// Then creates need not wait while the system still holds its newest changes back
    /// ([`Fetched::behind`]): a copy not served yet is found by the create itself.
    fn creates_match_existing(&self, _object: &str) -> bool {
        false
    }

    /// How many [`Connector::push`] calls the dispatcher may run at once. More than one
    /// only where the API answers a push late (asynchronous jobs) and two pushes of one
    /// record in flight together still make one copy (creates keyed by the canonical id):
    /// the dispatcher never puts one outbox entry in two pushes, but two entries of one
    /// merged record can meet.
    fn pushes_in_flight(&self) -> usize {
        1
    }

    /// Write a batch of at most `batch_size` items. `Ok` holds one result per item, in
    /// order (a 207 with some failed items is `Ok`); `Err` means nothing was written.
    async fn push(
        &self,
        object: &str,
        items: &[PushItem],
    ) -> Result<Vec<PushResult>, ConnectorError>;

    /// Verify and parse a webhook. Cheap and IO-free: it runs before the 2xx answer.
    fn verify_webhook(&self, req: &WebhookRequest<'_>) -> Result<Vec<WebhookEvent>, WebhookError> {
        let _ = req;
        Err(WebhookError::Malformed(
            "this connector takes no webhooks".into(),
        ))
    }

    /// The answer body a sender's protocol requires once events are stored (Salesforce
    /// Outbound Messages want a SOAP Ack); `None`: the daemon's JSON answer.
    fn webhook_ack(&self, accepted: usize) -> Option<WebhookAck> {
        let _ = accepted;
        None
    }

    /// Things an operator should know that are not errors (a full re-read because a
    /// cursor outlived the API's retention, ...), shown on `/status`.
    fn notices(&self) -> Vec<String> {
        Vec::new()
    }

    /// Where a person opens this copy in the system's own web app (the console links each
    /// copy there). `None` where the connector cannot say: an account id it was not given,
    /// or a base URL that is not the vendor's (a simulator, a proxy).
    fn record_url(&self, _object: &str, _external_id: &str) -> Option<String> {
        None
    }

    /// The API account's limiter figures, for `/status` and metrics.
    fn rate_limit(&self) -> Option<crate::http::LimiterStats> {
        None
    }

    /// What the API says is left of its documented allowance (Salesforce's daily
    /// `api-usage`), for `/status` and metrics; `None` when it does not say.
    fn quota_left(&self) -> Option<QuotaLeft> {
        None
    }

    /// The fields `object` has in this account, as the system's API describes them
    /// (`revsync discover`). One or a few requests, never a read of records.
    async fn describe(
        &self,
        object: &str,
    ) -> Result<crate::describe::ObjectSchema, ConnectorError> {
        Err(crate::describe::cannot_describe(object))
    }

    /// How long the runtime should wait before polling again when nothing is pending.
    fn min_poll_interval(&self) -> Duration {
        Duration::from_secs(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_record_keeps_its_body_and_id_and_is_counted() {
        let mut f = Fetched::default();
        f.reject(
            "contacts",
            &serde_json::json!({"id": 42, "email": ["not", "text"]}),
            "email is not text".into(),
        );
        f.reject("Lead", &serde_json::json!({"Id": "00Q1"}), "no time".into());
        f.reject("x", &serde_json::json!([1, 2]), "not an object".into());
        assert_eq!(f.invalid.len(), 3);
        let ids: Vec<_> = f
            .rejected
            .iter()
            .map(|r| r.external_id.as_deref())
            .collect();
        assert_eq!(ids, [Some("42"), Some("00Q1"), None]);
        assert_eq!(f.rejected[0].raw, r#"{"email":["not","text"],"id":42}"#);
        assert_eq!(f.rejected[1].object, "Lead");
    }
}
