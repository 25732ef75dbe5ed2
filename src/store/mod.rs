//! Durable storage behind the [`Store`] trait; the engine sees nothing else.
//!
//! The trait is a small ordered key-value interface over named tables with atomic
//! multi-table batches: that is what the engine needs for "records, links, indexes,
//! outbox and cursor in one batch", and it maps onto sled (one tree, key-prefixed
//! tables) and onto PostgreSQL (one table per [`Table`]) alike. See docs/adr/0003.

pub mod conformance;
pub mod copy;
mod mem;
mod pg;
mod sled_store;

pub use mem::MemStore;
pub use pg::{PgStore, SCHEMA_VERSION};

/// The store `store:` in revsync.yaml names, for a command that reads or writes it: sled in
/// `path`, or PostgreSQL at `url` (which must be migrated to this build's schema). The
/// daemon opens its own (src/app.rs): it also takes the PostgreSQL store for itself.
/// Blocks: call it off the async threads.
pub fn open(cfg: &crate::config::StoreConfig) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    use crate::config::StoreKind;
    Ok(match (cfg.kind, &cfg.url) {
        (StoreKind::Postgres, Some(url)) => {
            std::sync::Arc::new(PgStore::open(url.expose(), cfg.pool_size)?)
        }
        (StoreKind::Postgres, None) => {
            return Err(StoreError::Unusable(
                "store.url is required with `kind: postgres`".to_owned(),
            ))
        }
        (StoreKind::Sled, _) => std::sync::Arc::new(SledStore::open(
            &cfg.path,
            cfg.flush_interval_ms,
            cfg.cache_mb,
        )?),
    })
}

/// Whether `url` is a PostgreSQL connection string; the error never repeats it.
pub fn pg_url(url: &str) -> Result<(), String> {
    pg::parse_url(url).map(drop)
}
pub use sled_store::SledStore;

use serde::Serialize;

/// A logical table. The byte is the key prefix in key-value backends and must never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Table {
    Meta = 1,
    Records = 2,
    Links = 3,
    Index = 4,
    Outbox = 5,
    Audit = 6,
    Cursors = 7,
    Inbox = 8,
    Pushed = 9,
    DeadLetters = 10,
    /// Every value a revenue record's fields held, with the time it took effect (KPIS.md).
    History = 11,
    /// The engine's applied-change events, in write order, until a consumer takes them
    /// (workflows): written in the same batch as the change they describe.
    Events = 12,
    /// Workflow state: runs, timers and outgoing webhooks (src/workflows).
    Workflows = 13,
}

impl Table {
    pub const ALL: [Table; 13] = [
        Table::Meta,
        Table::Records,
        Table::Links,
        Table::Index,
        Table::Outbox,
        Table::Audit,
        Table::Cursors,
        Table::Inbox,
        Table::Pushed,
        Table::DeadLetters,
        Table::History,
        Table::Events,
        Table::Workflows,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Records => "records",
            Table::Links => "links",
            Table::Index => "index",
            Table::Outbox => "outbox",
            Table::Audit => "audit",
            Table::Cursors => "cursors",
            Table::Inbox => "inbox",
            Table::Pushed => "pushed",
            Table::DeadLetters => "dead_letters",
            Table::History => "history",
            Table::Events => "events",
            Table::Workflows => "workflows",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(Table, Vec<u8>, Vec<u8>),
    Delete(Table, Vec<u8>),
}

/// A key and its value, as returned by [`Store::scan`].
pub type Entry = (Vec<u8>, Vec<u8>);

/// Writes applied all together or not at all.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    ops: Vec<Op>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put(table, key.into(), value.into()));
    }

    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete(table, key.into()));
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("store i/o: {0}")]
    Io(#[from] sled::Error),
    /// The PostgreSQL store's server or connection (never its password).
    #[error("postgres: {0}")]
    Postgres(String),
    /// A store that cannot be used as asked: a schema at another version, a bad address,
    /// another daemon holding it, a copy that does not match its source.
    #[error("{0}")]
    Unusable(String),
}

/// The first key after every key that starts with `prefix` (`None`: there is none).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The entries of `table` under `prefix`, in key order, one page of at most `page_size`
/// at a time: a walk over a table of any size that holds one page in memory, not the
/// table. Each page is a fresh [`Store::scan`] after the last key seen, so writes made
/// during the walk may or may not be seen (no snapshot), but no key is seen twice.
pub fn scan_pages<'a>(
    store: &'a dyn Store,
    table: Table,
    prefix: &'a [u8],
    page_size: usize,
) -> impl Iterator<Item = Result<Vec<Entry>, StoreError>> + 'a {
    let page_size = page_size.max(1);
    let mut after: Option<Vec<u8>> = None;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match store.scan(table, prefix, after.as_deref(), page_size) {
            Ok(page) => {
                done = page.len() < page_size;
                after = page.last().map(|(k, _)| k.clone());
                (!page.is_empty()).then_some(Ok(page))
            }
            Err(e) => {
                done = true;
                Some(Err(e))
            }
        }
    })
}

/// Figures shown on `/status` and `/metrics`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct StoreStats {
    pub backend: &'static str,
    pub path: String,
    pub size_on_disk_bytes: u64,
    pub flushes: u64,
    pub last_flush_ms: Option<u64>,
}

/// Ordered key-value tables with atomic batches and explicit durability.
pub trait Store: Send + Sync + 'static {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Up to `limit` entries of `table` whose key starts with `prefix`, in key order,
    /// starting strictly after `after` when given (for paging through large tables).
    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;

    /// Up to `limit` entries of `table` under `prefix`, in reverse key order (the last
    /// first), starting strictly before `before` when given: the newest of a time-ordered
    /// run without reading the rest.
    ///
    /// The default pages forward through the whole prefix, keeping only the last `limit`
    /// entries: correct for wrappers and test stores; real backends override it.
    fn scan_rev(
        &self,
        table: Table,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut last: std::collections::VecDeque<Entry> = std::collections::VecDeque::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.scan(table, prefix, after.as_deref(), 1024)?;
            let full = page.len() == 1024;
            after = page.last().map(|(k, _)| k.clone());
            for e in page {
                if before.is_some_and(|b| e.0.as_slice() >= b) {
                    return Ok(last.into_iter().rev().collect());
                }
                last.push_back(e);
                if last.len() > limit {
                    last.pop_front();
                }
            }
            if !full {
                return Ok(last.into_iter().rev().collect());
            }
        }
    }

    /// Apply every operation atomically: after a crash either all are visible or none.
    fn write(&self, batch: WriteBatch) -> Result<(), StoreError>;

    /// Make everything written so far durable. Concurrent callers share one disk flush.
    fn flush(&self) -> Result<(), StoreError>;

    /// Figures kept in memory: no IO, safe on the async threads.
    fn stats(&self) -> StoreStats;

    /// Measure what [`Store::stats`] reports and costs IO (the size on disk). Called from
    /// a background task on the blocking pool.
    fn refresh_stats(&self) {}
}

/// A memory store that counts the calls tests care about.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct CountingStore {
    inner: MemStore,
    /// Batches written.
    pub writes: std::sync::atomic::AtomicU64,
    /// Times its (disk-reading, for sled) figures were asked for.
    pub stats_calls: std::sync::atomic::AtomicU64,
    /// Entries of `Records` its scans returned.
    pub records_scanned: std::sync::atomic::AtomicU64,
}

#[cfg(test)]
impl Store for CountingStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }
    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let page = self.inner.scan(table, prefix, after, limit)?;
        if table == Table::Records {
            self.records_scanned
                .fetch_add(page.len() as u64, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(page)
    }
    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.write(batch)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
    fn stats(&self) -> StoreStats {
        self.stats_calls
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store with only the forward scan: the trait's own reverse scan answers.
    struct ForwardOnly(MemStore);

    impl Store for ForwardOnly {
        fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.0.get(table, key)
        }
        fn scan(
            &self,
            table: Table,
            prefix: &[u8],
            after: Option<&[u8]>,
            limit: usize,
        ) -> Result<Vec<Entry>, StoreError> {
            self.0.scan(table, prefix, after, limit)
        }
        fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
            self.0.write(batch)
        }
        fn flush(&self) -> Result<(), StoreError> {
            Ok(())
        }
        fn stats(&self) -> StoreStats {
            self.0.stats()
        }
    }

    #[test]
    fn pages_walk_a_prefix_in_order_without_repeats() {
        let s = MemStore::new();
        let mut b = WriteBatch::new();
        for i in 0..7u8 {
            b.put(Table::Records, vec![b'p', i], vec![i]);
        }
        b.put(Table::Records, "q", "other prefix");
        b.put(Table::Links, "p\x09", "other table");
        s.write(b).unwrap();
        let pages: Vec<Vec<Entry>> = scan_pages(&s, Table::Records, b"p", 3)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
        let values: Vec<u8> = pages.concat().into_iter().flat_map(|(_, v)| v).collect();
        assert_eq!(values, [0, 1, 2, 3, 4, 5, 6]);
        // A page that ends exactly at the last key: one more scan finds nothing, no empty page.
        assert_eq!(scan_pages(&s, Table::Records, b"p", 7).count(), 1);
        assert_eq!(scan_pages(&s, Table::Cursors, b"", 7).count(), 0);
    }

    #[test]
    fn the_default_reverse_scan_matches_the_backends() {
        conformance::check(&ForwardOnly(MemStore::new()));
    }
}
