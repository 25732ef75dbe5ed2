//! Webhook intake: verify, store durably (shared flushes), answer, then apply in order.
//!
//! An event is acknowledged only once it is on disk, and its id is remembered in the same
//! batch, so a redelivered event is stored once and applied once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use revsync_sdk::{Change, Connector, Inbound, WebhookError, WebhookRequest};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::flush::Flusher;
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
}

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
}

impl Inbox {
    pub fn open(
        store: Arc<dyn Store>,
        flusher: Arc<Flusher>,
    ) -> Result<Arc<Self>, crate::store::StoreError> {
        // The highest queued sequence: the inbox is drained continuously, so this is short.
        let mut last = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store.scan(Table::Inbox, b"q\0", after.as_deref(), 10_000)?;
            let Some((k, _)) = page.last() else { break };
            last = u64::from_be_bytes(k[2..10].try_into().unwrap_or_default());
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
                };
                seq += 1;
                batch.put(
                    Table::Inbox,
                    item_key(seq),
                    serde_json::to_vec(&item).expect("inbox items serialize"),
                );
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

    /// Apply stored events in arrival order; an event leaves the inbox only once applied.
    pub async fn drain(
        self: Arc<Self>,
        engine: Arc<Engine>,
        connectors: Arc<std::collections::HashMap<String, Arc<dyn Connector>>>,
        status: Arc<StatusHub>,
        cancel: CancellationToken,
    ) {
        loop {
            let woken = self.wake.notified();
            let items = self
                .store
                .scan(Table::Inbox, b"q\0", None, 256)
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "reading the inbox failed");
                    Vec::new()
                });
            let mut progressed = false;
            let mut pending: Vec<(Vec<u8>, InboxItem)> = Vec::new();
            for (key, value) in items {
                match serde_json::from_slice::<InboxItem>(&value) {
                    Ok(i) => pending.push((key, i)),
                    Err(e) => {
                        tracing::error!(error = %e, "an unreadable inbox item was dropped");
                        let _ = self.remove(vec![key]);
                    }
                }
            }
            // Consecutive changes of one connector object go through the engine as one page
            // and leave the inbox in one write: far less to flush than two writes per event.
            let mut i = 0;
            while i < pending.len() {
                let (conn, object, is_change) = (
                    pending[i].1.connector.clone(),
                    pending[i].1.object.clone(),
                    pending[i].1.change.is_some(),
                );
                let mut j = i + 1;
                while is_change
                    && j < pending.len()
                    && pending[j].1.change.is_some()
                    && pending[j].1.connector == conn
                    && pending[j].1.object == object
                {
                    j += 1;
                }
                let group = &pending[i..j];
                let keys: Vec<Vec<u8>> = group.iter().map(|(k, _)| k.clone()).collect();
                match apply_group(&engine, &connectors, group).await {
                    Ok((fresh, again)) => {
                        status.update(&conn, |s| {
                            s.records_in += fresh as u64;
                            s.records_reread += again as u64;
                        });
                        let _ = self.remove(keys);
                        progressed = true;
                    }
                    Err(Retry::Later(e)) => {
                        tracing::warn!(connector = %conn, events = group.len(), error = %e, "webhook events will be retried");
                        break;
                    }
                    Err(Retry::Never(e)) => {
                        tracing::error!(connector = %conn, events = group.len(), error = %e, "webhook events could not be applied; dropped");
                        status.update(&conn, |s| {
                            s.errors.count += 1;
                            s.errors.last_message = Some(format!("webhook events: {e}"));
                            s.errors.last_at = Some(chrono::Utc::now());
                        });
                        let _ = self.remove(keys);
                    }
                }
                i = j;
            }
            if progressed {
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = woken => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }

    fn remove(&self, keys: Vec<Vec<u8>>) -> Result<(), crate::store::StoreError> {
        let mut b = WriteBatch::new();
        for key in keys {
            b.delete(Table::Inbox, key);
        }
        self.store.write(b)
    }
}

enum Retry {
    Later(String),
    Never(String),
}

/// Apply a run of inbox items: either one hint, or consecutive changes of one object.
async fn apply_group(
    engine: &Arc<Engine>,
    connectors: &std::collections::HashMap<String, Arc<dyn Connector>>,
    group: &[(Vec<u8>, InboxItem)],
) -> Result<(usize, usize), Retry> {
    let item = &group[0].1;
    let changes = match (&item.change, &item.hint) {
        (Some(_), _) => group.iter().filter_map(|(_, i)| i.change.clone()).collect(),
        (None, Some(id)) => {
            let conn = connectors
                .get(&item.connector)
                .ok_or_else(|| Retry::Never("connector no longer configured".into()))?;
            conn.fetch_by_ids(&item.object, std::slice::from_ref(id))
                .await
                .map_err(|e| {
                    if e.is_retryable() {
                        Retry::Later(e.to_string())
                    } else {
                        Retry::Never(e.to_string())
                    }
                })?
        }
        (None, None) => return Ok((0, 0)),
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
    Ok((n - again, again))
}
