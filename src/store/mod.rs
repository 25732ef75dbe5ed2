//! Durable storage behind the [`Store`] trait; the engine sees nothing else.
//!
//! The trait is a small ordered key-value interface over named tables with atomic
//! multi-table batches: that is what the engine needs for "records, links, indexes,
//! outbox and cursor in one batch", and it maps onto sled (one tree, key-prefixed
//! tables) and onto PostgreSQL (one table per [`Table`]) alike. See docs/adr/0003.

mod mem;
mod sled_store;

pub use mem::MemStore;
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
}

impl Table {
    pub const ALL: [Table; 10] = [
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

    /// Apply every operation atomically: after a crash either all are visible or none.
    fn write(&self, batch: WriteBatch) -> Result<(), StoreError>;

    /// Make everything written so far durable. Concurrent callers share one disk flush.
    fn flush(&self) -> Result<(), StoreError>;

    fn stats(&self) -> StoreStats;
}
