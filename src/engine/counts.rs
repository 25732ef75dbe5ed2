//! Outbox depth and dead letters per connector, kept as entries move instead of recounted.
//!
//! Counted once when the engine opens (one pass over the two tables), then adjusted by
//! every write that queues, drops, dead-letters or replays an entry, after that write
//! reached the store. `/status` reads them without touching the store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use uuid::Uuid;

use super::{codec, EngineError};
use crate::store::{Store, Table};

/// How many entries a connector has waiting and refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub outbox: u64,
    pub dead_letters: u64,
}

/// What one write moved, applied only once it is stored: the counts' changes per
/// connector, and the records of the kinds that keep history it wrote (for
/// [`super::RevenueObserver`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Moves {
    queues: BTreeMap<String, (i64, i64)>,
    pub(super) revenue: BTreeSet<Uuid>,
    /// The write left events for a consumer.
    pub(super) events: bool,
    /// The write made the first record with a route.
    pub(super) routes: bool,
}

impl Moves {
    pub fn outbox(&mut self, connector: &str, delta: i64) {
        self.entry(connector).0 += delta;
    }

    pub fn dead_letters(&mut self, connector: &str, delta: i64) {
        self.entry(connector).1 += delta;
    }

    fn entry(&mut self, connector: &str) -> &mut (i64, i64) {
        self.queues.entry(connector.to_owned()).or_default()
    }
}

/// The per-connector counts. Other writers of these tables (a new kind of dead letter)
/// keep them right by passing their own [`Moves`] to [`Counters::apply`].
#[derive(Debug, Default)]
pub struct Counters(Mutex<HashMap<String, QueueCounts>>);

/// Entries read per page by the one count at start.
const COUNT_PAGE: usize = 1024;

impl Counters {
    /// Count both tables once, page by page.
    pub fn count(store: &dyn Store) -> Result<Self, EngineError> {
        let mut counts: HashMap<String, QueueCounts> = HashMap::new();
        for table in [Table::Outbox, Table::DeadLetters] {
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = store.scan(table, b"", after.as_deref(), COUNT_PAGE)?;
                for (k, v) in &page {
                    let (connector, _) = codec::split_seq_key(k);
                    let c = counts.entry(connector).or_default();
                    if table == Table::Outbox {
                        let chunk =
                            codec::decode_outbox_chunk(k, v).map_err(|e| EngineError::Corrupt {
                                table: "outbox",
                                detail: e.to_string(),
                            })?;
                        c.outbox += chunk.len() as u64;
                    } else {
                        c.dead_letters += 1;
                    }
                }
                match page.last() {
                    Some((k, _)) if page.len() == COUNT_PAGE => after = Some(k.clone()),
                    _ => break,
                }
            }
        }
        Ok(Self(Mutex::new(counts)))
    }

    pub fn get(&self, connector: &str) -> QueueCounts {
        self.lock().get(connector).copied().unwrap_or_default()
    }

    /// Apply a stored write's moves.
    pub fn apply(&self, moves: &Moves) {
        let mut counts = self.lock();
        for (connector, (outbox, dead)) in &moves.queues {
            let c = counts.entry(connector.clone()).or_default();
            c.outbox = c.outbox.saturating_add_signed(*outbox);
            c.dead_letters = c.dead_letters.saturating_add_signed(*dead);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, QueueCounts>> {
        // Plain numbers: a panic elsewhere cannot leave them half-updated.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
