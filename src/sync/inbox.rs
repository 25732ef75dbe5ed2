//! Webhook intake: verify, store durably (shared flushes), answer, then apply in order.
//!
//! An event is acknowledged only once it is on disk, and its id is remembered in the same
//! batch, so a redelivered event is stored once and applied once.
//!
//! One bad event never stalls the others: a group that fails waits with its own back-off
//! while the drain goes past it (other connectors, other records of the same connector;
//! events of the same record wait behind it, so each record keeps its order), and after
//! `retry.max_attempts` it becomes an inbound dead letter with its last error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use revsync_sdk::{Change, Connector, Inbound, WebhookError, WebhookRequest};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::flush::Flusher;
use super::retry::RetryPolicy;
use crate::engine::rejected::{self, InboundDeadLetter};
use crate::engine::{Engine, Page};
use crate::status::StatusHub;
use crate::store::{Store, Table, WriteBatch};

/// An accepted event waiting to be applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxItem {
    pub connector: String,
    pub event_id: String,
    pub object: String,
    pub change: Option<Change>,
    pub hint: Option<String>,
    /// Failed tries so far; the next waits until `not_before` (store microseconds).
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub not_before: i64,
}

impl InboxItem {
    /// What keeps order: events of one record apply in arrival order.
    fn record_key(&self) -> (String, String, String) {
        let id = match (&self.change, &self.hint) {
            (Some(c), _) => c.external_id.clone(),
            (None, Some(h)) => h.clone(),
            (None, None) => String::new(),
        };
        (self.connector.clone(), self.object.clone(), id)
    }
}

/// How many queued events one drain pass looks at, past those waiting for a retry.
const PASS_LIMIT: usize = 8192;
const SCAN_PAGE: usize = 256;

fn item_key(seq: u64) -> Vec<u8> {
    let mut k = b"q\0".to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn seen_key(connector: &str, event_id: &str) -> Vec<u8> {
    [
        super::seen::PREFIX,
        connector.as_bytes(),
        b"\0",
        event_id.as_bytes(),
    ]
    .concat()
}

/// Why a webhook was not accepted, as an HTTP answer.
#[derive(Debug)]
pub enum Refused {
    UnknownConnector,
    Unauthorized(String),
    Malformed(String),
    Unavailable(String),
}

pub struct Inbox {
    store: Arc<dyn Store>,
    flusher: Arc<Flusher>,
    next_seq: AtomicU64,
    wake: Notify,
    /// One writer at a time decides "seen before?" and writes: no double acceptance.
    write_lock: tokio::sync::Mutex<()>,
    retry: RetryPolicy,
}

impl Inbox {
    pub fn open(
        store: Arc<dyn Store>,
        flusher: Arc<Flusher>,
        retry: RetryPolicy,
    ) -> Result<Arc<Self>, crate::store::StoreError> {
        // The highest queued sequence: the inbox is drained continuously, so this is short.
        let mut last = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store.scan(Table::Inbox, b"q\0", after.as_deref(), 10_000)?;
            let Some((k, _)) = page.last() else { break };
            last = k
                .get(2..10)
                .and_then(|seq| seq.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            after = Some(k.clone());
            if page.len() < 10_000 {
                break;
            }
        }
        Ok(Arc::new(Self {
            store,
            flusher,
            next_seq: AtomicU64::new(last),
            wake: Notify::new(),
            write_lock: tokio::sync::Mutex::new(()),
            retry,
        }))
    }

    /// Verify, store durably, and return how many events were new.
    pub async fn accept(
        &self,
        connector_id: &str,
        connector: &dyn Connector,
        req: &WebhookRequest<'_>,
        status: &StatusHub,
    ) -> Result<usize, Refused> {
        let events = connector.verify_webhook(req).map_err(|e| {
            status.update(connector_id, |s| s.webhooks_rejected += 1);
            tracing::warn!(connector = connector_id, error = %e, "webhook refused");
            match e {
                WebhookError::BadSignature(m) | WebhookError::Stale(m) => Refused::Unauthorized(m),
                WebhookError::Malformed(m) => Refused::Malformed(m),
            }
        })?;
        // One writer decides "seen before?" and writes, so a redelivery racing its original
        // is stored once; the store calls run off the async threads (a write can stall
        // behind a flush).
        let guard = self.write_lock.lock().await;
        let (store, connector_owned) = (self.store.clone(), connector_id.to_owned());
        let first_seq = self.next_seq.load(Ordering::SeqCst);
        let stored = tokio::task::spawn_blocking(move || -> Result<(usize, u64), String> {
            let mut batch = WriteBatch::new();
            let mut seq = first_seq;
            let mut fresh = 0;
            let accepted_at = super::seen::now_secs();
            for ev in events {
                let seen = seen_key(&connector_owned, &ev.id);
                if store
                    .get(Table::Inbox, &seen)
                    .map_err(|e| e.to_string())?
                    .is_some()
                {
                    continue;
                }
                let (change, hint) = match ev.inbound {
                    Inbound::Change(c) => (Some(c), None),
                    Inbound::Hint { external_id } => (None, Some(external_id)),
                };
                let item = InboxItem {
                    connector: connector_owned.clone(),
                    event_id: ev.id,
                    object: ev.object,
                    change,
                    hint,
                    attempts: 0,
                    not_before: 0,
                };
                seq += 1;
                batch.put(Table::Inbox, item_key(seq), encode_item(&item));
                batch.put(Table::Inbox, seen, super::seen::stamp(accepted_at));
                fresh += 1;
            }
            if !batch.is_empty() {
                store.write(batch).map_err(|e| e.to_string())?;
            }
            Ok((fresh, seq))
        })
        .await
        .map_err(|e| Refused::Unavailable(e.to_string()))?;
        let (fresh, last_seq) = stored.map_err(Refused::Unavailable)?;
        self.next_seq.store(last_seq, Ordering::SeqCst);
        drop(guard);
        // Durable before the answer: concurrent requests share one disk flush.
        self.flusher
            .flush()
            .await
            .map_err(|e| Refused::Unavailable(e.to_owned()))?;
        status.update(connector_id, |s| s.webhooks_accepted += fresh as u64);
        if fresh > 0 {
            self.wake.notify_one();
        }
        Ok(fresh)
    }

    /// Apply stored events in arrival order per record; an event leaves the inbox only
    /// once applied or dead-lettered.
    pub async fn drain(
        self: Arc<Self>,
        engine: Arc<Engine>,
        connectors: Arc<std::collections::HashMap<String, Arc<dyn Connector>>>,
        status: Arc<StatusHub>,
        cancel: CancellationToken,
    ) {
        loop {
            let woken = self.wake.notified();
            let (progressed, next_due) = self.pass(&engine, &connectors, &status, &cancel).await;
            if progressed {
                continue;
            }
            let wait = next_due.map_or(Duration::from_secs(2), |at| {
                let micros = at.saturating_sub(engine.now()).clamp(0, 2_000_000);
                Duration::from_micros(u64::try_from(micros).unwrap_or(0))
            });
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = woken => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One pass over the queue: apply what is due, skip what waits for a retry (and the
    /// later events of its record). Whether anything left the queue, and the soonest
    /// retry skipped.
    async fn pass(
        &self,
        engine: &Arc<Engine>,
        connectors: &std::collections::HashMap<String, Arc<dyn Connector>>,
        status: &StatusHub,
        cancel: &CancellationToken,
    ) -> (bool, Option<i64>) {
        let store = self.store.clone();
        let now = engine.now();
        let scanned = tokio::task::spawn_blocking(move || due_items(store.as_ref(), now)).await;
        let (pending, mut blocked, next_due) = match scanned {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reading the inbox failed");
                return (false, None);
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the inbox failed");
                return (false, None);
            }
        };
        let mut progressed = false;
        // Consecutive changes of one connector object go through the engine as one page
        // and leave the inbox in one write: far less to flush than two writes per event.
        for group in groups(pending) {
            if cancel.is_cancelled() {
                break;
            }
            // An earlier group of this pass failed for one of these records: keep order.
            if group.iter().any(|(_, i)| blocked.contains(&i.record_key())) {
                continue;
            }
            let Some(conn) = group.first().map(|(_, i)| i.connector.clone()) else {
                continue;
            };
            match apply_group(engine, connectors, &group, cancel).await {
                Ok((fresh, again, echoed)) => {
                    status.update(&conn, |s| {
                        s.records_in += fresh as u64;
                        s.records_reread += again as u64;
                        s.records_echoed += echoed as u64;
                    });
                    let keys = group.into_iter().map(|(k, _)| k).collect();
                    if let Err(e) = self.write(remove(keys)).await {
                        tracing::error!(connector = %conn, error = %e, "could not remove applied webhook events");
                    }
                    progressed = true;
                }
                // The events stay queued as they were, their attempts uncounted.
                Err(Retry::Interrupted) => break,
                // Several events failed together: try each alone, so one bad change does
                // not hold back the others.
                Err(Retry::Later(_)) if group.len() > 1 => {
                    for one in group {
                        let single = [one];
                        match apply_group(engine, connectors, &single, cancel).await {
                            Ok((fresh, again, echoed)) => {
                                status.update(&conn, |s| {
                                    s.records_in += fresh as u64;
                                    s.records_reread += again as u64;
                                    s.records_echoed += echoed as u64;
                                });
                                let [(k, _)] = single;
                                progressed |= self.write(remove(vec![k])).await.is_ok();
                            }
                            Err(Retry::Interrupted) => break,
                            Err(why) => {
                                let [one] = single;
                                blocked.insert(one.1.record_key());
                                progressed |= self.failed(engine, status, vec![one], why).await;
                            }
                        }
                    }
                }
                Err(why) => {
                    blocked.extend(group.iter().map(|(_, i)| i.record_key()));
                    progressed |= self.failed(engine, status, group, why).await;
                }
            }
        }
        (progressed, next_due)
    }

    /// A group that could not be applied: each event waits for its next try, or, out of
    /// attempts (or refused for good), becomes an inbound dead letter. Whether any left
    /// the queue.
    async fn failed(
        &self,
        engine: &Engine,
        status: &StatusHub,
        group: Vec<(Vec<u8>, InboxItem)>,
        why: Retry,
    ) -> bool {
        let (error, retryable) = match why {
            Retry::Later(e) => (e, true),
            Retry::Never(e) => (e, false),
            Retry::Interrupted => return false,
        };
        let Some(conn) = group.first().map(|(_, i)| i.connector.clone()) else {
            return false;
        };
        let now = engine.now();
        let mut batch = WriteBatch::new();
        let mut buried = 0u64;
        let mut attempts = 0;
        for (key, mut item) in group {
            item.attempts = item.attempts.saturating_add(1);
            attempts = item.attempts;
            let wait = retryable
                .then(|| self.retry.after_failure(item.attempts))
                .flatten();
            match wait {
                Some(wait) => {
                    item.not_before = super::retry::at_after(now, wait);
                    batch.put(Table::Inbox, key, encode_item(&item));
                }
                None => {
                    batch.delete(Table::Inbox, key);
                    rejected::put(
                        &mut batch,
                        &InboundDeadLetter {
                            connector: item.connector,
                            object: item.object,
                            external_id: item
                                .change
                                .as_ref()
                                .map(|c| c.external_id.clone())
                                .or(item.hint),
                            source: "webhook".into(),
                            raw: None,
                            change: item.change,
                            error: error.clone(),
                            attempts: item.attempts,
                            failed_ts: now,
                        },
                    );
                    buried += 1;
                }
            }
        }
        if buried > 0 {
            tracing::error!(connector = %conn, events = buried, attempts, error = %error, "webhook events could not be applied; moved to the dead-letter queue");
            status.update(&conn, |s| {
                s.inbound_dead_letters += buried;
                s.errors.count += 1;
                s.errors.last_message = Some(format!("webhook events dead-lettered: {error}"));
                s.errors.last_at = Some(chrono::Utc::now());
            });
        } else {
            tracing::warn!(connector = %conn, attempts, error = %error, "webhook events will be retried");
        }
        match self.write(batch).await {
            Ok(()) => buried > 0,
            Err(e) => {
                tracing::error!(connector = %conn, error = %e, "could not record failed webhook events");
                false
            }
        }
    }

    /// Queue an inbound dead letter again: its change as it was, or a read of its id
    /// through the connector (so a fixed mapping or configuration takes effect). False
    /// when there is no such letter or nothing to replay it from.
    pub async fn replay(&self, engine: &Engine, id: &str) -> Result<bool, String> {
        let Some(letter) = engine.inbound_dead_letter(id).map_err(|e| e.to_string())? else {
            return Ok(false);
        };
        let Some(key) = Engine::inbound_dead_letter_key(id) else {
            return Ok(false);
        };
        let (change, hint) = match (letter.change, letter.external_id) {
            (Some(c), _) => (Some(c), None),
            (None, Some(ext)) => (None, Some(ext)),
            (None, None) => return Ok(false),
        };
        let _guard = self.write_lock.lock().await;
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst) + 1;
        let item = InboxItem {
            connector: letter.connector,
            event_id: format!("replay:{id}"),
            object: letter.object,
            change,
            hint,
            attempts: 0,
            not_before: 0,
        };
        let mut batch = WriteBatch::new();
        batch.delete(Table::Inbox, key);
        batch.put(Table::Inbox, item_key(seq), encode_item(&item));
        self.write(batch).await.map_err(|e| e.to_string())?;
        self.wake.notify_one();
        Ok(true)
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), String> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.write(batch))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

type Queued = (Vec<u8>, InboxItem);

/// Queued events due at `now`, in order, up to [`PASS_LIMIT`] looked at; the records
/// whose earlier events wait for a retry (their later events wait too); the soonest retry.
#[allow(clippy::type_complexity)]
fn due_items(
    store: &dyn Store,
    now: i64,
) -> Result<
    (
        Vec<Queued>,
        std::collections::HashSet<(String, String, String)>,
        Option<i64>,
    ),
    crate::store::StoreError,
> {
    let mut due = Vec::new();
    let mut waiting = std::collections::HashSet::new();
    let mut next_due: Option<i64> = None;
    let mut after: Option<Vec<u8>> = None;
    let mut seen = 0;
    let mut unreadable = WriteBatch::new();
    while seen < PASS_LIMIT && due.len() < SCAN_PAGE {
        let page = store.scan(Table::Inbox, b"q\0", after.as_deref(), SCAN_PAGE)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        let full = page.len() == SCAN_PAGE;
        seen += page.len();
        for (key, value) in page {
            let item = match serde_json::from_slice::<InboxItem>(&value) {
                Ok(i) => i,
                Err(e) => {
                    tracing::error!(error = %e, "an unreadable inbox item was dropped");
                    unreadable.delete(Table::Inbox, key);
                    continue;
                }
            };
            let rk = item.record_key();
            if waiting.contains(&rk) {
                continue;
            }
            if item.not_before > now {
                next_due = Some(next_due.map_or(item.not_before, |n: i64| n.min(item.not_before)));
                waiting.insert(rk);
                continue;
            }
            due.push((key, item));
        }
        if !full {
            break;
        }
    }
    if !unreadable.is_empty() {
        store.write(unreadable)?;
    }
    Ok((due, waiting, next_due))
}

/// Runs of due events applied together: one hint alone, or consecutive changes of one
/// connector object.
fn groups(pending: Vec<Queued>) -> Vec<Vec<Queued>> {
    let mut out: Vec<Vec<Queued>> = Vec::new();
    for q in pending {
        let joins = out.last().and_then(|g| g.first()).is_some_and(|(_, head)| {
            head.change.is_some()
                && q.1.change.is_some()
                && head.connector == q.1.connector
                && head.object == q.1.object
        });
        match out.last_mut() {
            Some(g) if joins => g.push(q),
            _ => out.push(vec![q]),
        }
    }
    out
}

fn remove(keys: Vec<Vec<u8>>) -> WriteBatch {
    let mut b = WriteBatch::new();
    for key in keys {
        b.delete(Table::Inbox, key);
    }
    b
}

fn encode_item(item: &InboxItem) -> Vec<u8> {
    serde_json::to_vec(item).unwrap_or_default()
}

enum Retry {
    Later(String),
    Never(String),
    /// Shutdown started before the connector could answer.
    Interrupted,
}

/// Apply a run of inbox items: either one hint, or consecutive changes of one object.
/// Returns how many were new, read again, and revsync's own writes read back.
async fn apply_group(
    engine: &Arc<Engine>,
    connectors: &std::collections::HashMap<String, Arc<dyn Connector>>,
    group: &[(Vec<u8>, InboxItem)],
    cancel: &CancellationToken,
) -> Result<(usize, usize, usize), Retry> {
    let Some((_, item)) = group.first() else {
        return Ok((0, 0, 0));
    };
    let changes = match (&item.change, &item.hint) {
        (Some(_), _) => group.iter().filter_map(|(_, i)| i.change.clone()).collect(),
        (None, Some(id)) => {
            let conn = connectors
                .get(&item.connector)
                .ok_or_else(|| Retry::Never("connector no longer configured".into()))?;
            let read = conn.fetch_by_ids(&item.object, std::slice::from_ref(id));
            revsync_sdk::Shutdown::new(cancel.clone())
                .read(read)
                .await
                .map_err(|e| {
                    if e == revsync_sdk::ConnectorError::Cancelled {
                        Retry::Interrupted
                    } else if e.is_retryable() {
                        Retry::Later(e.to_string())
                    } else {
                        Retry::Never(e.to_string())
                    }
                })?
        }
        (None, None) => return Ok((0, 0, 0)),
    };
    let n = changes.len();
    let (engine, conn) = (engine.clone(), item.connector.clone());
    // Webhooks never move the poll cursor: the next poll re-reads, and replays are no-ops.
    let page = Page {
        object: item.object.clone(),
        changes,
        cursor: None,
    };
    let report = tokio::task::spawn_blocking(move || engine.apply(&conn, page))
        .await
        .map_err(|e| Retry::Later(e.to_string()))?
        .map_err(|e| match e {
            crate::engine::EngineError::UnknownObject { .. } => Retry::Never(e.to_string()),
            other => Retry::Later(other.to_string()),
        })?;
    // An event for a change already read (by a poll, or delivered twice) brings nothing new.
    let again = report.replayed.min(n);
    let echoed = report.echoed.min(n - again);
    Ok((n - again - echoed, again, echoed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    fn item(connector: &str, id: &str, hint: bool, not_before: i64) -> InboxItem {
        let change = Change {
            object: "contacts".into(),
            external_id: id.into(),
            source_updated_at: chrono::DateTime::UNIX_EPOCH,
            fields: Default::default(),
            deleted: false,
            canonical_id: None,
        };
        InboxItem {
            connector: connector.into(),
            event_id: format!("{connector}-{id}"),
            object: "contacts".into(),
            change: (!hint).then_some(change),
            hint: hint.then(|| id.to_owned()),
            attempts: u32::from(not_before > 0),
            not_before,
        }
    }

    #[test]
    fn a_pass_goes_past_events_waiting_for_a_retry_but_keeps_each_records_order() {
        let store = MemStore::new();
        let mut batch = WriteBatch::new();
        let queued = [
            item("a", "stuck", true, 500),
            item("a", "stuck", false, 0),
            item("a", "other", false, 0),
            item("b", "x", false, 0),
            item("b", "y", false, 0),
            item("a", "later", true, 0),
        ];
        for (seq, i) in queued.iter().enumerate() {
            batch.put(Table::Inbox, item_key(seq as u64 + 1), encode_item(i));
        }
        store.write(batch).unwrap();

        let (due, waiting, next_due) = due_items(&store, 100).unwrap();
        let ids: Vec<_> = due.iter().map(|(_, i)| i.event_id.as_str()).collect();
        assert_eq!(ids, ["a-other", "b-x", "b-y", "a-later"]);
        assert_eq!(next_due, Some(500));
        assert!(waiting.contains(&("a".into(), "contacts".into(), "stuck".into())));
        // Changes of one connector object apply together; a hint alone.
        let sizes: Vec<_> = groups(due).iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 2, 1]);

        // Once due, the stuck record's events come back, in order.
        let (due, waiting, _) = due_items(&store, 500).unwrap();
        assert_eq!(due.len(), 6);
        assert_eq!(due[0].1.event_id, due[1].1.event_id);
        assert!(due[0].1.hint.is_some() && due[1].1.change.is_some());
        assert!(waiting.is_empty());
    }
}
