//! `revsync store copy`: every table of one store into another (sled <-> PostgreSQL),
//! verified by counts and a checksum read back from the destination.

use sha2::{Digest, Sha256};

use super::{scan_pages, Store, StoreError, Table, WriteBatch};

/// Entries per read page and per written batch.
const PAGE: usize = 2000;

/// What a store holds, table by table: entries and a digest of every key and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub tables: Vec<(Table, u64)>,
    /// SHA-256 over each table's entries in key order (table byte, lengths, bytes), hex.
    pub checksum: String,
}

impl Summary {
    pub fn entries(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

fn digest_entry(h: &mut Sha256, t: Table, k: &[u8], v: &[u8]) {
    h.update([t as u8]);
    h.update((k.len() as u64).to_be_bytes());
    h.update(k);
    h.update((v.len() as u64).to_be_bytes());
    h.update(v);
}

/// Read every table of `store` once.
pub fn summarize(store: &dyn Store) -> Result<Summary, StoreError> {
    let mut h = Sha256::new();
    let mut tables = Vec::with_capacity(Table::ALL.len());
    for t in Table::ALL {
        let mut n = 0u64;
        for page in scan_pages(store, t, b"", PAGE) {
            for (k, v) in page? {
                digest_entry(&mut h, t, &k, &v);
                n += 1;
            }
        }
        tables.push((t, n));
    }
    Ok(Summary {
        tables,
        checksum: hex::encode(h.finalize()),
    })
}

/// Whether `store` holds nothing at all.
pub fn is_empty(store: &dyn Store) -> Result<bool, StoreError> {
    for t in Table::ALL {
        if !store.scan(t, b"", None, 1)?.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copy every entry of `from` into `to` (which should be empty: entries it holds that
/// `from` lacks stay), then read both back and compare. Returns the source's summary;
/// an error when the destination's differs.
pub fn copy(
    from: &dyn Store,
    to: &dyn Store,
    mut progress: impl FnMut(Table, u64),
) -> Result<Summary, StoreError> {
    let mut h = Sha256::new();
    let mut tables = Vec::with_capacity(Table::ALL.len());
    for t in Table::ALL {
        let mut n = 0u64;
        for page in scan_pages(from, t, b"", PAGE) {
            let mut b = WriteBatch::new();
            for (k, v) in page? {
                digest_entry(&mut h, t, &k, &v);
                b.put(t, k, v);
                n += 1;
            }
            to.write(b)?;
            progress(t, n);
        }
        tables.push((t, n));
    }
    to.flush()?;
    let copied = Summary {
        tables,
        checksum: hex::encode(h.finalize()),
    };
    let there = summarize(to)?;
    if there != copied {
        return Err(StoreError::Unusable(format!(
            "the copy does not match its source: {} entries (checksum {}) read, {} (checksum {}) in the destination",
            copied.entries(),
            copied.checksum,
            there.entries(),
            there.checksum
        )));
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    #[test]
    fn a_copy_holds_every_entry_and_is_verified() {
        let from = MemStore::new();
        let mut b = WriteBatch::new();
        for i in 0..4500u32 {
            b.put(Table::Records, i.to_be_bytes().to_vec(), vec![1u8; 10]);
        }
        b.put(Table::Workflows, "w", "x");
        b.put(Table::Meta, "m", Vec::<u8>::new());
        from.write(b).unwrap();
        let to = MemStore::new();
        assert!(is_empty(&to).unwrap());
        let s = copy(&from, &to, |_, _| {}).unwrap();
        assert_eq!(s.entries(), 4502);
        assert_eq!(summarize(&to).unwrap(), s);
        assert_eq!(summarize(&from).unwrap(), s);
        // A destination that held something else no longer matches: refused.
        let dirty = MemStore::new();
        let mut b = WriteBatch::new();
        b.put(Table::Audit, "stray", "1");
        dirty.write(b).unwrap();
        assert!(copy(&from, &dirty, |_, _| {}).is_err());
    }
}
