//! The embedded sled backend: one tree, one key-prefix byte per table.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::{Entry, Op, Store, StoreError, StoreStats, Table, WriteBatch};

pub struct SledStore {
    db: sled::Db,
    path: String,
    flushes: AtomicU64,
    last_flush_ms: AtomicU64,
    /// Measured by `refresh_stats` (it walks the data directory), read by `stats`.
    size_on_disk: AtomicU64,
}

impl SledStore {
    /// Open (or create) the store at `path`. `flush_every_ms` bounds how much
    /// unflushed work a crash can lose; atomic batches keep what survives consistent.
    pub fn open(path: &Path, flush_every_ms: u64, cache_mb: u64) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_mb * 1024 * 1024)
            .flush_every_ms(Some(flush_every_ms))
            .open()
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        let size = db.size_on_disk().unwrap_or(0);
        Ok(Self {
            db,
            path: path.display().to_string(),
            flushes: AtomicU64::new(0),
            last_flush_ms: AtomicU64::new(u64::MAX),
            size_on_disk: AtomicU64::new(size),
        })
    }

    fn key(table: Table, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(key.len() + 1);
        k.push(table as u8);
        k.extend_from_slice(key);
        k
    }
}

impl Store for SledStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(Self::key(table, key))?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let full = Self::key(table, prefix);
        let iter = match after {
            Some(a) => {
                let start = Self::key(table, a);
                self.db
                    .range((std::ops::Bound::Excluded(start), std::ops::Bound::Unbounded))
            }
            None => self.db.range(full.clone()..),
        };
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(&full) || out.len() >= limit {
                break;
            }
            out.push((k.get(1..).unwrap_or_default().to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn scan_rev(
        &self,
        table: Table,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let full = Self::key(table, prefix);
        let end = match before {
            Some(b) => std::ops::Bound::Excluded(Self::key(table, b)),
            None => match super::prefix_end(&full) {
                Some(e) => std::ops::Bound::Excluded(e),
                None => std::ops::Bound::Unbounded,
            },
        };
        let mut out = Vec::new();
        for item in self
            .db
            .range((std::ops::Bound::Included(full.clone()), end))
            .rev()
        {
            let (k, v) = item?;
            if !k.starts_with(&full) || out.len() >= limit {
                break;
            }
            out.push((k.get(1..).unwrap_or_default().to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        for op in batch.into_ops() {
            match op {
                Op::Put(t, k, v) => b.insert(Self::key(t, &k), v),
                Op::Delete(t, k) => b.remove(Self::key(t, &k)),
            }
        }
        self.db.apply_batch(b)?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        self.db.flush()?;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.last_flush_ms
            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn refresh_stats(&self) {
        if let Ok(size) = self.db.size_on_disk() {
            self.size_on_disk.store(size, Ordering::Relaxed);
        }
    }

    fn stats(&self) -> StoreStats {
        let last = self.last_flush_ms.load(Ordering::Relaxed);
        StoreStats {
            backend: "sled",
            path: self.path.clone(),
            size_on_disk_bytes: self.size_on_disk.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            last_flush_ms: (last != u64::MAX).then_some(last),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sled's background flusher holds the directory lock for a moment after a drop, so
    /// a reopen in the same process may briefly find it taken.
    fn open(dir: &Path) -> SledStore {
        for _ in 0..100 {
            match SledStore::open(dir, 1000, 16) {
                Ok(s) => return s,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
        SledStore::open(dir, 1000, 16).unwrap()
    }

    #[test]
    fn tables_do_not_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let mut b = WriteBatch::new();
        b.put(Table::Records, "a", "1");
        b.put(Table::Links, "a", "2");
        s.write(b).unwrap();
        assert_eq!(s.get(Table::Records, b"a").unwrap().unwrap(), b"1");
        assert_eq!(s.get(Table::Links, b"a").unwrap().unwrap(), b"2");
        assert!(s.get(Table::Outbox, b"a").unwrap().is_none());
    }

    #[test]
    fn reverse_scans_read_the_last_keys_first() {
        let dir = tempfile::tempdir().unwrap();
        super::super::conformance::check(&open(dir.path()));
    }

    #[test]
    fn scan_pages_by_prefix_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let mut b = WriteBatch::new();
        for k in ["p/3", "p/1", "p/2", "q/1"] {
            b.put(Table::Index, k, k);
        }
        b.put(Table::Links, "p/0", "other table");
        s.write(b).unwrap();
        let page = s.scan(Table::Index, b"p/", None, 2).unwrap();
        let keys: Vec<_> = page.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, [b"p/1".as_slice(), b"p/2"]);
        let next = s.scan(Table::Index, b"p/", Some(b"p/2"), 10).unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].0, b"p/3");
        // The last table's scan must stop at its own end.
        let dl = s.scan(Table::DeadLetters, b"", None, 10).unwrap();
        assert!(dl.is_empty());
    }

    /// `/status` and `/metrics` read stats on the async threads: the size on disk is
    /// measured only by `refresh_stats` (a background task, on the blocking pool).
    #[test]
    fn stats_read_no_disk_until_refreshed() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let before = s.stats().size_on_disk_bytes;
        let mut b = WriteBatch::new();
        for i in 0..2000u32 {
            b.put(Table::Audit, i.to_be_bytes().to_vec(), vec![7u8; 1024]);
        }
        s.write(b).unwrap();
        s.flush().unwrap();
        assert_eq!(s.stats().size_on_disk_bytes, before);
        s.refresh_stats();
        assert!(s.stats().size_on_disk_bytes > before);
    }

    #[test]
    fn flushed_writes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path());
            let mut b = WriteBatch::new();
            b.put(Table::Cursors, "hs/contacts", "c1");
            b.delete(Table::Cursors, "missing");
            s.write(b).unwrap();
            s.flush().unwrap();
            assert_eq!(s.stats().flushes, 1);
        }
        let s = open(dir.path());
        assert_eq!(
            s.get(Table::Cursors, b"hs/contacts").unwrap().unwrap(),
            b"c1"
        );
    }
}
