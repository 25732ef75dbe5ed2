//! Audit retention: keep a record's newest entries (a count per record) and drop entries
//! older than an age, in a background pass that reads the audit table in bounded pages;
//! then, under the same age, the merge journals (a merge that old can no longer be undone).
//!
//! Audit keys are record id (16 bytes), then the entry's time (8, ordered), then a digest:
//! a forward scan sees each record's entries together, oldest first. The pass remembers
//! at most the newest `max_per_record` keys of the record it is in, so its memory is
//! bounded whatever one record holds.

use std::collections::VecDeque;

use crate::store::{Store, StoreError, Table, WriteBatch};

/// The time (microseconds) an audit key sorts by.
fn key_time(key: &[u8]) -> Option<i64> {
    let b: [u8; 8] = key.get(16..24)?.try_into().ok()?;
    Some((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
}

/// One pass over the audit table, resumable page by page.
#[derive(Debug)]
pub struct AuditPruner {
    max_per_record: usize,
    /// Entries timed before this (microseconds) go; `None` keeps every age.
    cutoff: Option<i64>,
    after: Option<Vec<u8>>,
    record: Option<Vec<u8>>,
    /// The record's newest keys seen so far, oldest first.
    recent: VecDeque<Vec<u8>>,
    /// The audit is done and the pass reads merge journals (only with a cutoff).
    journals: bool,
    done: bool,
}

impl AuditPruner {
    pub fn new(max_per_record: usize, cutoff: Option<i64>) -> Self {
        Self {
            max_per_record: max_per_record.max(1),
            cutoff,
            after: None,
            record: None,
            recent: VecDeque::new(),
            journals: false,
            done: false,
        }
    }

    pub fn done(&self) -> bool {
        self.done
    }

    /// Read up to `limit` entries and delete, in one write, those past either bound.
    /// Returns how many were deleted.
    pub fn step(&mut self, store: &dyn Store, limit: usize) -> Result<usize, StoreError> {
        if self.done {
            return Ok(0);
        }
        if self.journals {
            return self.step_journals(store, limit);
        }
        let page = store.scan(Table::Audit, b"", self.after.as_deref(), limit.max(1))?;
        let mut batch = WriteBatch::new();
        for (key, _) in &page {
            let record = key.get(..16).unwrap_or(key);
            if self.record.as_deref() != Some(record) {
                self.record = Some(record.to_vec());
                self.recent.clear();
            }
            let too_old = matches!((self.cutoff, key_time(key)), (Some(c), Some(t)) if t < c);
            if too_old {
                batch.delete(Table::Audit, key.clone());
                continue;
            }
            self.recent.push_back(key.clone());
            if self.recent.len() > self.max_per_record {
                if let Some(oldest) = self.recent.pop_front() {
                    batch.delete(Table::Audit, oldest);
                }
            }
        }
        let removed = batch.len();
        if !batch.is_empty() {
            store.write(batch)?;
        }
        self.after = page.last().map(|(k, _)| k.clone());
        if page.len() < limit.max(1) {
            // Journals age like the audit; with no age limit they stay.
            self.journals = self.cutoff.is_some();
            self.done = !self.journals;
            self.after = None;
        }
        Ok(removed)
    }

    /// A page of merge journals: those written before the cutoff go. A journal's key
    /// ends with its sequence, the write's time times 1024 (codec::index::journal).
    fn step_journals(&mut self, store: &dyn Store, limit: usize) -> Result<usize, StoreError> {
        let page = store.scan(Table::Index, JOURNALS, self.after.as_deref(), limit.max(1))?;
        let mut batch = WriteBatch::new();
        for (key, _) in &page {
            let seq = key
                .len()
                .checked_sub(8)
                .and_then(|at| key.get(at..))
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes);
            let written = seq.map(|s| i64::try_from(s / 1024).unwrap_or(i64::MAX));
            if matches!((self.cutoff, written), (Some(c), Some(t)) if t < c) {
                batch.delete(Table::Index, key.clone());
            }
        }
        let removed = batch.len();
        if !batch.is_empty() {
            store.write(batch)?;
        }
        self.after = page.last().map(|(k, _)| k.clone());
        self.done = page.len() < limit.max(1);
        Ok(removed)
    }
}

/// Where every merge journal's `Index` key starts.
const JOURNALS: &[u8] = b"j\0";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::codec::audit_key;
    use crate::store::MemStore;
    use uuid::Uuid;

    fn trail(store: &MemStore, record: Uuid, times: std::ops::RangeInclusive<i64>) {
        let mut b = WriteBatch::new();
        for t in times {
            b.put(Table::Audit, audit_key(record, t, &[t as u8; 8]), vec![]);
        }
        store.write(b).unwrap();
    }

    fn times(store: &MemStore, record: Uuid) -> Vec<i64> {
        store
            .scan(Table::Audit, record.as_bytes(), None, usize::MAX)
            .unwrap()
            .iter()
            .filter_map(|(k, _)| key_time(k))
            .collect()
    }

    /// Run a whole pass in pages of 3, so records straddle pages.
    fn pass(store: &MemStore, mut p: AuditPruner) -> usize {
        let mut removed = 0;
        for _ in 0..100 {
            removed += p.step(store, 3).unwrap();
            if p.done() {
                return removed;
            }
        }
        panic!("the pass did not end");
    }

    #[test]
    fn each_record_keeps_its_newest_entries() {
        let store = MemStore::new();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        trail(&store, a, -3..=10);
        trail(&store, b, 1..=3);
        assert_eq!(pass(&store, AuditPruner::new(4, None)), 10);
        assert_eq!(times(&store, a), [7, 8, 9, 10]);
        assert_eq!(times(&store, b), [1, 2, 3]);
        assert_eq!(
            pass(&store, AuditPruner::new(4, None)),
            0,
            "a second pass finds nothing"
        );
    }

    #[test]
    fn merge_journals_older_than_the_cutoff_go_and_stay_without_one() {
        use crate::engine::codec::index;
        let store = MemStore::new();
        let mut b = WriteBatch::new();
        for (record, at) in [(1u128, 3i64), (1, 9), (2, 4), (3, 12)] {
            let seq = u64::try_from(at).unwrap() * 1024;
            b.put(
                Table::Index,
                index::journal(Uuid::from_u128(record), seq),
                vec![],
            );
        }
        // Other index entries are never a journal's.
        b.put(Table::Index, index::email("j@acme.com"), vec![]);
        store.write(b).unwrap();
        let left = |store: &MemStore| {
            store
                .scan(Table::Index, b"", None, usize::MAX)
                .unwrap()
                .len()
        };
        assert_eq!(pass(&store, AuditPruner::new(100, None)), 0);
        assert_eq!(left(&store), 5);
        assert_eq!(pass(&store, AuditPruner::new(100, Some(5))), 2);
        assert_eq!(left(&store), 3);
        assert!(
            store
                .scan(
                    Table::Index,
                    &index::journal_of(Uuid::from_u128(1)),
                    None,
                    10
                )
                .unwrap()
                .len()
                == 1
        );
    }

    #[test]
    fn entries_older_than_the_cutoff_go() {
        let store = MemStore::new();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        trail(&store, a, 1..=10);
        trail(&store, b, 1..=3);
        assert_eq!(pass(&store, AuditPruner::new(100, Some(5))), 7);
        assert_eq!(times(&store, a), [5, 6, 7, 8, 9, 10]);
        assert!(times(&store, b).is_empty());
    }
}
