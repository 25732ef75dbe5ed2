//! The scored identity model's block entries in the index: what each record is indexed
//! under, and their rebuild when a store predates them or a model's blocking changed.

use std::collections::BTreeMap;

use revsync_sdk::{Kind, Record};
use sha2::{Digest, Sha256};

use super::codec::{self, index};
use super::identity::Model;
use super::{EngineError, Policies, SCAN_PAGE};
use crate::store::{scan_pages, Store, Table, WriteBatch};

/// `Meta` key of the blocking a kind's block entries were built with.
fn built_key(kind: Kind) -> Vec<u8> {
    format!("identity_blocks\0{kind}").into_bytes()
}

/// Changes whenever what a block entry holds or where it is keyed changes, so that the
/// index is rebuilt at the next start.
const LAYOUT: &[u8] = b"blocks v2: class-prefixed keys";

/// The class a record's block entries are filed under. Persons with a work email (valid,
/// at a company domain, not a role address) are filed apart: two of them never merge by
/// score (two addresses at one company, or at two companies, are two people), so a
/// record with a work email reads only the other class. In a CRM most people have one,
/// which keeps the blocks it reads small.
fn class<'v>(kind: Kind, get: &dyn Fn(&str) -> Option<&'v revsync_sdk::Value>) -> char {
    let work = kind == Kind::Person
        && get("email_valid") != Some(&revsync_sdk::Value::Bool(false))
        && get("email")
            .and_then(revsync_sdk::Value::as_text)
            .is_some_and(|e| {
                !super::normalize::is_role_address(e)
                    && super::normalize::domain_from_email(e).is_some()
            });
    if work {
        'w'
    } else {
        'o'
    }
}

/// The block keys to read for values no exact key placed: each of the model's keys, in
/// the classes a match can be in.
pub(super) fn keys_to_read<'v>(
    model: &Model,
    get: &dyn Fn(&str) -> Option<&'v revsync_sdk::Value>,
) -> Vec<String> {
    let classes: &[char] = match class(model.kind, get) {
        'w' => &['o'],
        _ => &['o', 'w'],
    };
    let keys = model.block_keys(get);
    classes
        .iter()
        .flat_map(|c| keys.iter().map(move |k| format!("{c}|{k}")))
        .collect()
}

/// Block entries of a record: none when it is absorbed or archived.
pub(super) fn entries(model: &Model, rec: &Record) -> BTreeMap<Vec<u8>, Vec<u8>> {
    if rec.merged_into.is_some() || rec.archived {
        return BTreeMap::new();
    }
    let get = |f: &str| rec.value(f);
    let keys = model.block_keys(&get);
    if keys.is_empty() {
        return BTreeMap::new();
    }
    let value = codec::encode(&model.compared_values(&get));
    let (kind, c) = (rec.kind.as_str(), class(rec.kind, &get));
    keys.into_iter()
        .map(|k| {
            (
                index::block(kind, &format!("{c}|{k}"), rec.id),
                value.clone(),
            )
        })
        .collect()
}

/// What the entries depend on: the blocking rules and the fields compared.
fn fingerprint(model: &Model) -> Vec<u8> {
    let fields: Vec<(&str, Option<&str>)> = model
        .comparisons
        .iter()
        .map(|c| (c.field.as_str(), c.swap_field()))
        .collect();
    let shape = serde_json::to_vec(&(LAYOUT, &model.blocking, fields)).unwrap_or_default();
    Sha256::digest(&shape).to_vec()
}

/// Build each enabled kind's block entries if the store has none for its current
/// blocking (a store from before scored matching, or a model whose rules changed), and
/// forget the build of a kind switched off (its entries would go stale meanwhile). Runs at
/// start, before any write. The number of records indexed.
pub(super) fn ensure(store: &dyn Store, policies: &Policies) -> Result<usize, EngineError> {
    let mut indexed = 0;
    for kind in [Kind::Person, Kind::Organization] {
        let key = built_key(kind);
        let Some(model) = policies.identity(kind) else {
            if store.get(Table::Meta, &key)?.is_some() {
                let mut b = WriteBatch::new();
                b.delete(Table::Meta, key);
                store.write(b)?;
            }
            continue;
        };
        let want = fingerprint(model);
        if store.get(Table::Meta, &key)?.as_deref() == Some(want.as_slice()) {
            continue;
        }
        let started = std::time::Instant::now();
        let prefix = index::blocks_of(kind.as_str());
        for page in scan_pages(store, Table::Index, &prefix, SCAN_PAGE) {
            let mut b = WriteBatch::new();
            for (k, _) in page? {
                b.delete(Table::Index, k);
            }
            store.write(b)?;
        }
        let mut b = WriteBatch::new();
        let mut failed = None;
        for_each_live(store, kind, |rec| {
            let e = entries(model, rec);
            indexed += usize::from(!e.is_empty());
            for (k, v) in e {
                b.put(Table::Index, k, v);
            }
            if b.len() >= SCAN_PAGE {
                if let Err(e) = store.write(std::mem::take(&mut b)) {
                    failed = Some(e);
                    return false;
                }
            }
            true
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        store.write(b)?;
        let mut b = WriteBatch::new();
        b.put(Table::Meta, key, want);
        store.write(b)?;
        tracing::info!(kind = %kind, records = indexed, ms = started.elapsed().as_millis() as u64, "built the scored identity block index");
    }
    Ok(indexed)
}

/// Every record of `kind` that is neither absorbed nor archived, in id order, until `f`
/// answers false.
pub(super) fn for_each_live(
    store: &dyn Store,
    kind: Kind,
    mut f: impl FnMut(&Record) -> bool,
) -> Result<(), EngineError> {
    for page in scan_pages(store, Table::Records, &[], SCAN_PAGE) {
        for (_, v) in page? {
            if codec::decode_record_kind(&v).ok() != Some(kind) {
                continue;
            }
            let rec = codec::decode_record(&v).map_err(|e| EngineError::Corrupt {
                table: "records",
                detail: e.to_string(),
            })?;
            if rec.merged_into.is_some() || rec.archived {
                continue;
            }
            if !f(&rec) {
                return Ok(());
            }
        }
    }
    Ok(())
}
