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
        b"d\0".as_slice(),
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
        let guard = self.write_lock.lock().await;
        let mut batch = WriteBatch::new();
        let mut fresh = 0;
        for ev in events {
            let seen = seen_key(connector_id, &ev.id);
            let known = self
                .store
                .get(Table::Inbox, &seen)
                .map_err(|e| Refused::Unavailable(e.to_string()))?;
            if known.is_some() {
                continue;
            }
            let (change, hint) = match ev.inbound {
                Inbound::Change(c) => (Some(c), None),
                Inbound::Hint { external_id } => (None, Some(external_id)),
            };
            let item = InboxItem {
                connector: connector_id.to_owned(),
                event_id: ev.id,
                object: ev.object,
                change,
                hint,
            };
            let seq = self.next_seq.fetch_add(1, Ordering::SeqCst) + 1;
            batch.put(
                Table::Inbox,
                item_key(seq),
                serde_json::to_vec(&item).expect("inbox items serialize"),
            );
            batch.put(Table::Inbox, seen, Vec::new());
            fresh += 1;
        }
        if !batch.is_empty() {
            self.store
                .write(batch)
                .map_err(|e| Refused::Unavailable(e.to_string()))?;
        }
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
            for (key, value) in items {
                let item: InboxItem = match serde_json::from_slice(&value) {
                    Ok(i) => i,
                    Err(e) => {
                        tracing::error!(error = %e, "an unreadable inbox item was dropped");
                        let _ = self.remove(key);
                        continue;
                    }
                };
                match apply_item(&engine, &connectors, &item).await {
                    Ok(n) => {
                        status.update(&item.connector, |s| s.records_in += n as u64);
                        let _ = self.remove(key);
                        progressed = true;
                    }
                    Err(Retry::Later(e)) => {
                        tracing::warn!(connector = %item.connector, event = %item.event_id, error = %e, "webhook event will be retried");
                        break;
                    }
                    Err(Retry::Never(e)) => {
                        tracing::error!(connector = %item.connector, event = %item.event_id, error = %e, "webhook event could not be applied; dropped");
                        status.update(&item.connector, |s| {
                            s.errors.count += 1;
                            s.errors.last_message =
                                Some(format!("webhook event {}: {e}", item.event_id));
                            s.errors.last_at = Some(chrono::Utc::now());
                        });
                        let _ = self.remove(key);
                    }
                }
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

    fn remove(&self, key: Vec<u8>) -> Result<(), crate::store::StoreError> {
        let mut b = WriteBatch::new();
        b.delete(Table::Inbox, key);
        self.store.write(b)
    }
}

enum Retry {
    Later(String),
    Never(String),
}

async fn apply_item(
    engine: &Arc<Engine>,
    connectors: &std::collections::HashMap<String, Arc<dyn Connector>>,
    item: &InboxItem,
) -> Result<usize, Retry> {
    let changes = match (&item.change, &item.hint) {
        (Some(c), _) => vec![c.clone()],
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
        (None, None) => return Ok(0),
    };
    let n = changes.len();
    let (engine, conn) = (engine.clone(), item.connector.clone());
    // Webhooks never move the poll cursor: the next poll re-reads, and replays are no-ops.
    let page = Page {
        object: item.object.clone(),
        changes,
        cursor: None,
    };
    tokio::task::spawn_blocking(move || engine.apply(&conn, page))
        .await
        .map_err(|e| Retry::Later(e.to_string()))?
        .map_err(|e| match e {
            crate::engine::EngineError::UnknownObject { .. } => Retry::Never(e.to_string()),
            other => Retry::Later(other.to_string()),
        })?;
    Ok(n)
}
