//! An in-memory [`Store`] with the same semantics as sled minus durability: for
//! property tests that run thousands of cases, and as a reference in comparisons.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{Entry, Op, Store, StoreError, StoreStats, Table, WriteBatch};

/// Every entry, keyed by (table prefix, key).
pub type Dump = BTreeMap<(u8, Vec<u8>), Vec<u8>>;

#[derive(Default)]
pub struct MemStore {
    data: RwLock<Dump>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every entry of every table, for whole-state comparisons in tests.
    pub fn dump(&self) -> Dump {
        self.read_lock().clone()
    }

    // Under the lock only map inserts, removes and clones run, which leave the map whole
    // even if a thread panics, so a poisoned lock is read through.
    fn read_lock(&self) -> RwLockReadGuard<'_, Dump> {
        self.data.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Dump> {
        self.data.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store for MemStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read_lock().get(&(table as u8, key.to_vec())).cloned())
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let data = self.read_lock();
        let start = (table as u8, after.unwrap_or(prefix).to_vec());
        Ok(data
            .range(start..)
            .filter(|((_, k), _)| after != Some(k.as_slice()))
            .take_while(|((t, k), _)| *t == table as u8 && k.starts_with(prefix))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn scan_rev(
        &self,
        table: Table,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let data = self.read_lock();
        let t = table as u8;
        let end = match before {
            Some(b) => std::ops::Bound::Excluded((t, b.to_vec())),
            None => match super::prefix_end(prefix) {
                Some(e) => std::ops::Bound::Excluded((t, e)),
                None => std::ops::Bound::Excluded((t + 1, Vec::new())),
            },
        };
        Ok(data
            .range((std::ops::Bound::Included((t, prefix.to_vec())), end))
            .rev()
            .take_while(|((tb, k), _)| *tb == t && k.starts_with(prefix))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut data = self.write_lock();
        for op in batch.into_ops() {
            match op {
                Op::Put(t, k, v) => {
                    data.insert((t as u8, k), v);
                }
                Op::Delete(t, k) => {
                    data.remove(&(t as u8, k));
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            backend: "memory",
            ..StoreStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_scans_read_the_last_keys_first() {
        super::super::conformance::check(&MemStore::new());
    }

    #[test]
    fn scans_like_sled() {
        let s = MemStore::new();
        let mut b = WriteBatch::new();
        for k in ["p/3", "p/1", "p/2", "q/1"] {
            b.put(Table::Index, k, k);
        }
        b.put(Table::Links, "p/0", "x");
        s.write(b).unwrap();
        let keys: Vec<_> = s
            .scan(Table::Index, b"p/", None, 2)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, [b"p/1".to_vec(), b"p/2".to_vec()]);
        let next = s.scan(Table::Index, b"p/", Some(b"p/2"), 10).unwrap();
        assert_eq!(next, vec![(b"p/3".to_vec(), b"p/3".to_vec())]);
    }
}
