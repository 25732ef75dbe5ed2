//! The [`Store`] trait's contract as one check, run against every backend: the memory
//! store and sled in their unit tests, PostgreSQL in `tests/pg_store.rs`.
//!
//! Call it on an empty store; it panics with what differs.
// A check: a panic here is the failed contract.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::{scan_pages, Entry, Store, Table, WriteBatch};

fn keys(v: Vec<Entry>) -> Vec<Vec<u8>> {
    v.into_iter().map(|(k, _)| k).collect()
}

/// Every part of the contract, in turn.
pub fn check(s: &dyn Store) {
    for t in Table::ALL {
        assert!(
            s.scan(t, b"", None, 1).unwrap().is_empty(),
            "the check needs an empty store ({})",
            t.name()
        );
    }
    tables_are_apart(s);
    batches_end_as_their_last_operation_says(s);
    forward_scans(s);
    reverse_scans(s);
    binary_keys_order_byte_by_byte(s);
    large_batches_and_pages(s);
}

fn tables_are_apart(s: &dyn Store) {
    let mut b = WriteBatch::new();
    for t in Table::ALL {
        b.put(t, "same-key", t.name());
    }
    s.write(b).unwrap();
    for t in Table::ALL {
        assert_eq!(
            s.get(t, b"same-key").unwrap().as_deref(),
            Some(t.name().as_bytes())
        );
    }
    let mut b = WriteBatch::new();
    for t in Table::ALL {
        b.delete(t, "same-key");
    }
    s.write(b).unwrap();
    for t in Table::ALL {
        assert!(s.get(t, b"same-key").unwrap().is_none(), "{}", t.name());
    }
}

fn batches_end_as_their_last_operation_says(s: &dyn Store) {
    let mut b = WriteBatch::new();
    b.put(Table::Records, "a", "1");
    b.put(Table::Records, "a", "2");
    b.put(Table::Records, "b", "1");
    b.delete(Table::Records, "b");
    b.delete(Table::Records, "c");
    b.put(Table::Records, "c", "3");
    b.delete(Table::Records, "never-there");
    b.put(Table::Cursors, "hubspot/contacts", "cursor");
    s.write(b).unwrap();
    assert_eq!(s.get(Table::Records, b"a").unwrap().unwrap(), b"2");
    assert!(s.get(Table::Records, b"b").unwrap().is_none());
    assert_eq!(s.get(Table::Records, b"c").unwrap().unwrap(), b"3");
    assert_eq!(
        s.get(Table::Cursors, b"hubspot/contacts").unwrap().unwrap(),
        b"cursor"
    );
    // An empty value is a value, not an absence.
    let mut b = WriteBatch::new();
    b.put(Table::Meta, "empty", Vec::<u8>::new());
    s.write(b).unwrap();
    assert_eq!(s.get(Table::Meta, b"empty").unwrap(), Some(Vec::new()));
    s.write(WriteBatch::new()).unwrap();
    s.flush().unwrap();
    let mut b = WriteBatch::new();
    for k in ["a", "c"] {
        b.delete(Table::Records, k);
    }
    b.delete(Table::Cursors, "hubspot/contacts");
    b.delete(Table::Meta, "empty");
    s.write(b).unwrap();
}

fn forward_scans(s: &dyn Store) {
    let mut b = WriteBatch::new();
    for k in ["p/3", "p/1", "p/2", "q/1", "o/9", "p"] {
        b.put(Table::Index, k, k);
    }
    b.put(Table::Links, "p/0", "other table");
    s.write(b).unwrap();
    assert_eq!(
        keys(s.scan(Table::Index, b"p/", None, 2).unwrap()),
        [b"p/1".to_vec(), b"p/2".to_vec()]
    );
    assert_eq!(
        keys(s.scan(Table::Index, b"p/", Some(b"p/2"), 10).unwrap()),
        [b"p/3".to_vec()]
    );
    // `after` need not be a key that exists.
    assert_eq!(
        keys(s.scan(Table::Index, b"p/", Some(b"p/15"), 10).unwrap()),
        [b"p/2".to_vec(), b"p/3".to_vec()]
    );
    assert_eq!(
        keys(s.scan(Table::Index, b"p", None, 10).unwrap()),
        [
            b"p".to_vec(),
            b"p/1".to_vec(),
            b"p/2".to_vec(),
            b"p/3".to_vec()
        ]
    );
    assert_eq!(s.scan(Table::Index, b"", None, 100).unwrap().len(), 6);
    assert!(s.scan(Table::Index, b"p/", None, 0).unwrap().is_empty());
    assert_eq!(
        s.scan(Table::Index, b"q/", None, 10).unwrap(),
        vec![(b"q/1".to_vec(), b"q/1".to_vec())]
    );
    // The last table's scan ends at its own end.
    assert!(s.scan(Table::Workflows, b"", None, 10).unwrap().is_empty());
    let mut b = WriteBatch::new();
    for k in ["p/3", "p/1", "p/2", "q/1", "o/9", "p"] {
        b.delete(Table::Index, k);
    }
    b.delete(Table::Links, "p/0");
    s.write(b).unwrap();
}

/// The reverse scan's contract.
fn reverse_scans(s: &dyn Store) {
    let mut b = WriteBatch::new();
    for k in ["p/3", "p/1", "p/2", "q/1", "o/9"] {
        b.put(Table::Index, k, k);
    }
    b.put(Table::Index, b"\xff\xff".to_vec(), b"top".to_vec());
    b.put(Table::Links, "p/4", "other table");
    b.put(Table::DeadLetters, "a", "last table");
    s.write(b).unwrap();
    assert_eq!(
        keys(s.scan_rev(Table::Index, b"p/", None, 2).unwrap()),
        [b"p/3".to_vec(), b"p/2".to_vec()]
    );
    assert_eq!(
        keys(s.scan_rev(Table::Index, b"p/", Some(b"p/2"), 10).unwrap()),
        [b"p/1".to_vec()]
    );
    assert_eq!(
        keys(s.scan_rev(Table::Index, b"\xff", None, 10).unwrap()),
        [b"\xff\xff".to_vec()]
    );
    assert_eq!(s.scan_rev(Table::Index, b"", None, 10).unwrap().len(), 6);
    assert_eq!(
        keys(s.scan_rev(Table::DeadLetters, b"", None, 10).unwrap()),
        [b"a".to_vec()]
    );
    assert!(s
        .scan_rev(Table::Cursors, b"", None, 10)
        .unwrap()
        .is_empty());
    let mut b = WriteBatch::new();
    for k in ["p/3", "p/1", "p/2", "q/1", "o/9"] {
        b.delete(Table::Index, k);
    }
    b.delete(Table::Index, b"\xff\xff".to_vec());
    b.delete(Table::Links, "p/4");
    b.delete(Table::DeadLetters, "a");
    s.write(b).unwrap();
}

/// Keys are bytes, ordered byte by byte with a prefix first: the engine's keys hold
/// big-endian numbers, UUIDs and zero separators, and rely on exactly that order.
fn binary_keys_order_byte_by_byte(s: &dyn Store) {
    let ks: [&[u8]; 7] = [
        b"\x00",
        b"\x00\x00",
        b"\x00\x01",
        b"\x7f",
        b"\x80",
        b"\xff",
        b"\xff\x00",
    ];
    let mut b = WriteBatch::new();
    for k in ks.iter().rev() {
        b.put(Table::Outbox, k.to_vec(), k.to_vec());
    }
    s.write(b).unwrap();
    let want: Vec<Vec<u8>> = ks.iter().map(|k| k.to_vec()).collect();
    assert_eq!(keys(s.scan(Table::Outbox, b"", None, 100).unwrap()), want);
    let mut rev = want.clone();
    rev.reverse();
    assert_eq!(
        keys(s.scan_rev(Table::Outbox, b"", None, 100).unwrap()),
        rev
    );
    assert_eq!(
        keys(s.scan(Table::Outbox, b"\x00", None, 100).unwrap()),
        [b"\x00".to_vec(), b"\x00\x00".to_vec(), b"\x00\x01".to_vec()]
    );
    assert_eq!(
        keys(s.scan(Table::Outbox, b"\xff", None, 100).unwrap()),
        [b"\xff".to_vec(), b"\xff\x00".to_vec()]
    );
    let mut b = WriteBatch::new();
    for k in ks {
        b.delete(Table::Outbox, k.to_vec());
    }
    s.write(b).unwrap();
}

/// A page of engine work is thousands of operations; a walk over a large table pages.
fn large_batches_and_pages(s: &dyn Store) {
    let mut b = WriteBatch::new();
    for i in 0..5000u32 {
        b.put(Table::History, i.to_be_bytes().to_vec(), vec![7u8; 64]);
    }
    s.write(b).unwrap();
    let pages: Vec<Vec<Entry>> = scan_pages(s, Table::History, b"", 1000)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(pages.len(), 5);
    let all: Vec<Vec<u8>> = pages.into_iter().flat_map(keys).collect();
    let want: Vec<Vec<u8>> = (0..5000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    assert_eq!(all, want);
    let mut b = WriteBatch::new();
    for i in 0..5000u32 {
        b.delete(Table::History, i.to_be_bytes().to_vec());
    }
    s.write(b).unwrap();
    assert!(s.scan(Table::History, b"", None, 1).unwrap().is_empty());
}
