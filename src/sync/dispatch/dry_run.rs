//! `dry_run: true`: the dispatcher pushes nothing and acknowledges nothing; it keeps
//! `/status` told of the writes its outbox holds, a total and the newest in detail.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use revsync_sdk::{ConnectorError, PushItem, PushOp};
use uuid::Uuid;

use super::{build, pending_key, Dispatcher, PendingKey};
use crate::engine::codec::OutboxEntry;
use crate::engine::EngineError;
use crate::status::{PlannedWrite, WouldWrite};

/// Writes shown in detail.
const SHOWN: usize = 20;

/// How often the list is brought up to date.
const EVERY: Duration = Duration::from_secs(2);

/// Outbox entries read per store call.
const PAGE: usize = 1024;

/// Newest entries looked at for the detail, at most: past these, a list of writes that
/// need none (the system already holds that state) stays short rather than slow.
const LOOKED_AT: usize = SHOWN * 10;

const NOTE: &str = "dry run: nothing is written; `would_write` lists what would be (`revsync plan` shows values before and after)";

/// What a dry run has read of its outbox, kept between looks so each reads only the
/// entries queued since the last.
#[derive(Default)]
struct Seen {
    after: Option<u64>,
    /// Entries read.
    entries: u64,
    /// The newest entry per record, object and operation, as a push would coalesce them.
    writes: HashMap<PendingKey, (u64, OutboxEntry)>,
    /// An update's changed fields, as read from the system: per (record, object, copy),
    /// with the record's version they were computed for, so a copy is read again only
    /// when the record changed.
    changed: Changed,
}

/// (record, object, copy) -> (record version, the fields an update changes there).
type Changed = HashMap<(Uuid, String, String), (u64, Option<Vec<String>>)>;

impl Dispatcher {
    /// Until cancelled: bring `would_write` on `/status` up to date every few seconds.
    pub(super) async fn preview(self: Arc<Self>) {
        let conn = self.connector_id.clone();
        self.status
            .update(&conn, |s| s.note = Some(NOTE.to_owned()));
        let mut seen = Seen::default();
        loop {
            match self.look(&mut seen).await {
                Ok(would) => self.status.update(&conn, |s| s.would_write = Some(would)),
                Err(e) => {
                    tracing::error!(connector = %conn, error = %e, "dry run could not read its outbox")
                }
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
    }

    async fn look(&self, seen: &mut Seen) -> Result<WouldWrite, EngineError> {
        // Entries leave an outbox only when pushed or dead-lettered, which a dry run never
        // does; should some leave all the same, read it again from the start.
        if self.engine.queue_counts(&self.connector_id).outbox < seen.entries {
            let changed = std::mem::take(&mut seen.changed);
            *seen = Seen {
                changed,
                ..Seen::default()
            };
        }
        loop {
            let (c, after) = (self.connector_id.clone(), seen.after);
            let page = self
                .blocking(move |e| e.outbox_after(&c, after, PAGE))
                .await?;
            let full = page.len() == PAGE;
            seen.entries += page.len() as u64;
            for (seq, entry) in page {
                seen.after = Some(seq);
                seen.writes.insert(pending_key(&entry), (seq, entry));
            }
            if !full {
                break;
            }
        }
        let mut newest: Vec<&(u64, OutboxEntry)> = seen.writes.values().collect();
        newest.sort_unstable_by_key(|w| std::cmp::Reverse(w.0));
        newest.truncate(LOOKED_AT);
        // Built newest first until enough are real writes (some may need none: the system
        // already holds that state, or the record is no longer mapped there).
        let mut items: Vec<(String, Uuid, PushItem)> = Vec::new();
        for chunk in newest.chunks(SHOWN) {
            let (c, entries) = (
                self.connector_id.clone(),
                chunk.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
            );
            let built = self
                .blocking(move |e| {
                    let mut out = Vec::new();
                    for entry in entries {
                        if let Some((record, items, _, false)) =
                            build(e, &c, &entry.object, &entry)?
                        {
                            out.extend(
                                items.into_iter().map(|i| (entry.object.clone(), record, i)),
                            );
                        }
                    }
                    Ok(out)
                })
                .await?;
            items.extend(built);
            if items.len() >= SHOWN {
                break;
            }
        }
        items.truncate(SHOWN);
        self.read_changed(&items, &mut seen.changed).await;
        let newest = items
            .into_iter()
            .map(|(object, record, item)| {
                let (operation, external_id, fields) = match item.op {
                    PushOp::Create { .. } => {
                        ("create", None, Some(item.fields.into_keys().collect()))
                    }
                    PushOp::Delete { external_id } => {
                        ("delete", Some(external_id), Some(Vec::new()))
                    }
                    PushOp::Update { external_id } => {
                        let key = (record, object.clone(), external_id.clone());
                        let fields = seen.changed.get(&key).and_then(|(_, f)| f.clone());
                        ("update", Some(external_id), fields)
                    }
                };
                PlannedWrite {
                    object,
                    operation,
                    external_id,
                    record,
                    fields,
                }
            })
            .collect();
        Ok(WouldWrite {
            total: seen.writes.len() as u64,
            newest,
        })
    }

    /// For the updates shown: which fields differ from the copy as the system holds it,
    /// read by id (as a push reads copies before updating them), and only for copies
    /// whose record changed since the last read. A failed read leaves them unknown until
    /// the next look.
    async fn read_changed(&self, items: &[(String, Uuid, PushItem)], changed: &mut Changed) {
        let mut stale: HashMap<&str, Vec<(Uuid, &str, &PushItem)>> = HashMap::new();
        for (object, record, item) in items {
            let PushOp::Update { external_id } = &item.op else {
                continue;
            };
            let key = (*record, object.clone(), external_id.clone());
            if changed.get(&key).is_none_or(|(v, _)| *v != item.version) {
                stale.entry(object.as_str()).or_default().push((
                    *record,
                    external_id.as_str(),
                    item,
                ));
            }
        }
        for (object, updates) in stale {
            let ids: Vec<String> = updates.iter().map(|(_, id, _)| (*id).to_owned()).collect();
            let read = self.connector.fetch_by_ids(object, &ids);
            let copies = match revsync_sdk::Shutdown::new(self.cancel.clone())
                .read(read)
                .await
            {
                Ok(copies) => copies,
                Err(ConnectorError::Cancelled) => return,
                // Unknown for now, read again at the next look.
                Err(e) => {
                    tracing::warn!(connector = %self.connector_id, object, error = %e, "dry run could not read the copies it would update");
                    continue;
                }
            };
            for (record, id, item) in updates {
                let copy = copies.iter().find(|c| c.external_id == id);
                let held = match copy {
                    Some(c) => {
                        let (conn, object, fields) = (
                            self.connector_id.clone(),
                            object.to_owned(),
                            c.fields.clone(),
                        );
                        self.blocking(move |e| e.copy_projection(&conn, &object, &fields))
                            .await
                            .ok()
                            .flatten()
                    }
                    None => None,
                };
                let fields = held.map(|held| {
                    item.fields
                        .iter()
                        .filter(|(k, v)| held.get(*k) != Some(*v))
                        .map(|(k, _)| k.clone())
                        .collect()
                });
                changed.insert(
                    (record, object.to_owned(), id.to_owned()),
                    (item.version, fields),
                );
            }
        }
        // Only the copies shown are remembered.
        changed.retain(|(r, o, id), _| {
            items.iter().any(|(object, record, item)| {
                record == r
                    && object == o
                    && matches!(&item.op, PushOp::Update { external_id } if external_id == id)
            })
        });
    }
}
