//! Accepted webhook ids, remembered to refuse a redelivery, and forgotten after a TTL.
//!
//! Each id's value is the second it was accepted (8 bytes, big-endian). Ids written before
//! the value held a time have an empty value: the pruner stamps them with the time it
//! first sees them, so they go one TTL after that (never sooner than a stamped id would).
//! The TTL outlasts every vendor's retry window (docs/configuration.md, `retention.`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::{Store, StoreError, Table, WriteBatch};

/// Key prefix of seen ids in the inbox table.
pub const PREFIX: &[u8] = b"d\0";

/// The value stored with an id accepted at `now` (seconds since the epoch).
pub fn stamp(now: u64) -> Vec<u8> {
    now.to_be_bytes().to_vec()
}

/// Seconds since the epoch, by the wall clock.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// What one page of pruning did, and where the next one starts (`None`: the end).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub removed: usize,
    /// Old-format ids given their first-sight time.
    pub stamped: usize,
    pub next: Option<Vec<u8>>,
}

/// Look at up to `limit` ids after `after`; forget those accepted more than `ttl_secs`
/// before `now`, in one write.
pub fn prune_page(
    store: &dyn Store,
    now: u64,
    ttl_secs: u64,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Pruned, StoreError> {
    let page = store.scan(Table::Inbox, PREFIX, after, limit)?;
    let mut batch = WriteBatch::new();
    let mut out = Pruned::default();
    for (key, value) in &page {
        match <[u8; 8]>::try_from(value.as_slice()) {
            Ok(at) if now.saturating_sub(u64::from_be_bytes(at)) > ttl_secs => {
                batch.delete(Table::Inbox, key.clone());
                out.removed += 1;
            }
            Ok(_) => {}
            Err(_) => {
                batch.put(Table::Inbox, key.clone(), stamp(now));
                out.stamped += 1;
            }
        }
    }
    if !batch.is_empty() {
        store.write(batch)?;
    }
    if page.len() == limit {
        out.next = page.last().map(|(k, _)| k.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    fn seen(store: &MemStore, id: &str, value: Vec<u8>) {
        let mut b = WriteBatch::new();
        b.put(Table::Inbox, [PREFIX, id.as_bytes()].concat(), value);
        store.write(b).unwrap();
    }

    fn ids(store: &MemStore) -> Vec<String> {
        store
            .scan(Table::Inbox, PREFIX, None, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k[PREFIX.len()..]).into_owned())
            .collect()
    }

    /// Prune everything, page by page, as the background task does.
    fn prune(store: &MemStore, now: u64, ttl: u64) -> (usize, usize) {
        let (mut removed, mut stamped, mut after) = (0, 0, None);
        for _ in 0..100 {
            let p = prune_page(store, now, ttl, after.as_deref(), 2).unwrap();
            (removed, stamped) = (removed + p.removed, stamped + p.stamped);
            match p.next {
                Some(n) => after = Some(n),
                None => return (removed, stamped),
            }
        }
        panic!("pruning did not end");
    }

    #[test]
    fn ids_older_than_the_ttl_are_forgotten_and_old_format_ones_one_ttl_after_first_sight() {
        let store = MemStore::new();
        seen(&store, "old", stamp(1_000));
        seen(&store, "edge", stamp(1_900));
        seen(&store, "new", stamp(2_050));
        seen(&store, "legacy", Vec::new());
        // An inbox item beside them is not a seen id.
        let mut b = WriteBatch::new();
        b.put(
            Table::Inbox,
            b"q\0\0\0\0\0\0\0\0\x01".to_vec(),
            b"{}".to_vec(),
        );
        store.write(b).unwrap();

        assert_eq!(prune(&store, 2_000, 100), (1, 1));
        assert_eq!(ids(&store), ["edge", "legacy", "new"]);
        assert_eq!(
            prune(&store, 2_101, 100),
            (2, 0),
            "legacy was first seen at 2000"
        );
        assert_eq!(ids(&store), ["new"]);
        assert_eq!(
            prune(&store, 2_150, 100),
            (0, 0),
            "exactly the ttl old is kept"
        );
        assert_eq!(prune(&store, 2_151, 100), (1, 0));
        assert!(ids(&store).is_empty());
        assert_eq!(store.scan(Table::Inbox, b"q\0", None, 10).unwrap().len(), 1);
    }
}
