//! Store keys and value encodings for the engine's tables.
//!
//! Keys are built so that prefix scans answer the engine's questions (an outbox in
//! order, a record's audit trail in time order). Values are postcard: compact and
//! fast, and every type here is ours, so the format is pinned by these structs.

use revsync_sdk::{FieldEntry, Link, Provenance, Record};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub type Hash = [u8; 16];

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    encode_onto(v, Vec::new())
}

/// `v` appended to `buf`. Postcard fails only on sequences of unknown length or a full
/// fixed buffer; our types have neither and a `Vec` grows, so this cannot fail.
#[allow(
    clippy::expect_used,
    reason = "postcard into a Vec cannot fail on our types"
)]
fn encode_onto<T: Serialize + ?Sized>(v: &T, buf: Vec<u8>) -> Vec<u8> {
    postcard::to_extend(v, buf).expect("engine types always encode")
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}

pub fn record_key(id: Uuid) -> Vec<u8> {
    id.as_bytes().to_vec()
}

/// `Links`: (connector, object, external id) -> canonical id.
pub fn link_key(connector: &str, object: &str, external_id: &str) -> Vec<u8> {
    join(&[
        connector.as_bytes(),
        object.as_bytes(),
        external_id.as_bytes(),
    ])
}

/// `Index` keys: identity evidence and reverse relations.
pub mod index {
    use super::*;

    pub fn email(e: &str) -> Vec<u8> {
        join(&[b"e", e.as_bytes()])
    }
    pub fn domain(d: &str) -> Vec<u8> {
        join(&[b"d", d.as_bytes()])
    }
    /// `target` is referenced by `referrer`: lets a merge re-point relations without a scan.
    pub fn referrer(target: Uuid, referrer: Uuid) -> Vec<u8> {
        join(&[b"r", target.as_bytes(), referrer.as_bytes()])
    }
    /// The connectors a record made by a workflow may be created in (its `route:`).
    pub fn route(record: Uuid) -> Vec<u8> {
        join(&[b"route", record.as_bytes()])
    }
    pub fn referrers_of(target: Uuid) -> Vec<u8> {
        let mut k = join(&[b"r", target.as_bytes()]);
        k.push(0);
        k
    }
    /// `record` carries a cross-system id (a Stripe customer's `metadata.hubspot_company_id`)
    /// naming a copy not linked yet: once it is, the two are one customer and merge.
    /// The value names the copy that carried the id, for the merge's audit entry.
    pub fn xref_waiting(connector: &str, object: &str, external_id: &str, record: Uuid) -> Vec<u8> {
        let mut k = xref_waiting_for(connector, object, external_id);
        k.extend_from_slice(record.as_bytes());
        k
    }
    /// The cross-system ids a copy named when last read, so that entries for an id it no
    /// longer names (finance corrected it) are dropped instead of merging strangers later.
    pub fn xref_named(connector: &str, object: &str, external_id: &str) -> Vec<u8> {
        join(&[
            b"xn",
            connector.as_bytes(),
            object.as_bytes(),
            external_id.as_bytes(),
        ])
    }
    pub fn xref_waiting_for(connector: &str, object: &str, external_id: &str) -> Vec<u8> {
        let mut k = join(&[
            b"xw",
            connector.as_bytes(),
            object.as_bytes(),
            external_id.as_bytes(),
        ]);
        k.push(0);
        k
    }
    /// `referrer` names a copy revsync has not linked yet (a contact's company not read
    /// yet): once that copy is linked, the referrer's projections can name it.
    pub fn waiting(connector: &str, object: &str, external_id: &str, referrer: Uuid) -> Vec<u8> {
        let mut k = waiting_for(connector, object, external_id);
        k.extend_from_slice(referrer.as_bytes());
        k
    }
    pub fn waiting_for(connector: &str, object: &str, external_id: &str) -> Vec<u8> {
        let mut k = join(&[
            b"w",
            connector.as_bytes(),
            object.as_bytes(),
            external_id.as_bytes(),
        ]);
        k.push(0);
        k
    }
    /// A deleted link: where it pointed and when it was deleted.
    pub fn tombstone(connector: &str, object: &str, external_id: &str) -> Vec<u8> {
        join(&[
            b"t",
            connector.as_bytes(),
            object.as_bytes(),
            external_id.as_bytes(),
        ])
    }
    /// The prefix of every tombstone of one connector object.
    pub fn tombstones_of(connector: &str, object: &str) -> Vec<u8> {
        tombstone(connector, object, "")
    }
    /// `record` is in block `key` of its kind's scored identity model. The value holds
    /// the record's compared values, so scoring a candidate reads no record.
    pub fn block(kind: &str, key: &str, record: Uuid) -> Vec<u8> {
        let mut k = block_of(kind, key);
        k.extend_from_slice(record.as_bytes());
        k
    }
    pub fn block_of(kind: &str, key: &str) -> Vec<u8> {
        let mut k = join(&[b"b", kind.as_bytes(), key.as_bytes()]);
        k.push(0);
        k
    }
    /// Every block entry of a kind.
    pub fn blocks_of(kind: &str) -> Vec<u8> {
        let mut k = join(&[b"b", kind.as_bytes()]);
        k.push(0);
        k
    }
    /// A pair waiting for review, older record first; the value is a [`ReviewPair`].
    pub fn review(a: Uuid, b: Uuid) -> Vec<u8> {
        let (a, b) = if a <= b { (a, b) } else { (b, a) };
        join(&[b"q", a.as_bytes(), b.as_bytes()])
    }
    pub const REVIEWS: &[u8] = b"q\0";
    /// A pair an operator rejected (or unmerged): never proposed or merged again.
    pub fn never(a: Uuid, b: Uuid) -> Vec<u8> {
        let (a, b) = if a <= b { (a, b) } else { (b, a) };
        join(&[b"qn", a.as_bytes(), b.as_bytes()])
    }
    /// A merge into `record` that `records unmerge` can undo; the value is a
    /// [`MergeJournal`]. `seq` orders a record's merges, oldest first.
    pub fn journal(record: Uuid, seq: u64) -> Vec<u8> {
        let mut k = journal_of(record);
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }
    /// Every merge journal of `record`.
    pub fn journal_of(record: Uuid) -> Vec<u8> {
        let mut k = join(&[b"j", record.as_bytes()]);
        k.push(0);
        k
    }
}

/// What one merge did to the record that survived it, kept so that `records unmerge`
/// can undo exactly that (issue 19): a copy that joined the record, or a record it
/// absorbed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeJournal {
    /// When the merge was written (engine clock, microseconds).
    pub at: i64,
    /// The copy that joined, for a join.
    pub link: Option<Link>,
    /// The record absorbed (now a tombstone), for a record merge.
    pub absorbed: Option<Uuid>,
    /// The joining copy's own values as it reported them: what it becomes on its own.
    pub own: BTreeMap<String, FieldEntry>,
    /// Each field of the survivor the merge set: (field, value before, value after).
    pub changed: Vec<(String, Option<FieldEntry>, FieldEntry)>,
    /// The links the survivor took from the absorbed record.
    pub links_added: Vec<Link>,
    /// Records whose relations pointed at the absorbed record and now at the survivor.
    pub referrers: Vec<Uuid>,
    /// Why they merged: the identity keys or score.
    pub evidence: String,
}

/// A pair of records the scored identity model could not settle on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewPair {
    pub kind: revsync_sdk::Kind,
    pub probability: f64,
    pub weight: f64,
    /// (field, level, weight) of each comparison that had values on both sides.
    pub levels: Vec<(String, String, f64)>,
    /// Why it waits for a person: between the thresholds, or the guard that held it.
    pub reason: String,
    pub at: i64,
}

/// `Outbox`: (connector, sequence) -> chunk; a connector's outbox in order.
///
/// A chunk holds up to [`OUTBOX_CHUNK_MAX`] entries queued by one write, keyed by the
/// sequence of its last entry: a page queues one key per target system instead of one
/// per entry (a third of the engine's keyed writes), and the chunk holding sequence `s`
/// is the first key at or after `s`, since one connector's chunks never overlap.
pub fn outbox_key(connector: &str, seq: u64) -> Vec<u8> {
    let mut k = join(&[connector.as_bytes(), b""]);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Entries per outbox chunk. Small enough that a confirmation, which rewrites the chunk
/// without the confirmed entry, stays a few KB; large enough that a page of 500 changes
/// writes a handful of keys per target.
pub const OUTBOX_CHUNK_MAX: usize = 64;

/// First byte of a chunk value. A single entry, as stores written before chunks hold it,
/// starts with the length of its record id (16), so both read back without a migration.
const OUTBOX_CHUNK_TAG: u8 = 0xC1;

pub type OutboxChunk = Vec<(u64, OutboxEntry)>;

pub fn encode_outbox_chunk(entries: &[(u64, OutboxEntry)]) -> Vec<u8> {
    encode_onto(entries, vec![OUTBOX_CHUNK_TAG])
}

/// The entries of the chunk stored under `key`, in sequence order.
pub fn decode_outbox_chunk(key: &[u8], value: &[u8]) -> Result<OutboxChunk, postcard::Error> {
    match value.split_first() {
        Some((&OUTBOX_CHUNK_TAG, rest)) => decode(rest),
        _ => Ok(vec![(split_seq_key(key).1, decode(value)?)]),
    }
}

/// (connector, sequence) back out of an outbox or dead-letter key.
pub fn split_seq_key(key: &[u8]) -> (String, u64) {
    let (head, tail) = key.split_at(key.len().saturating_sub(8));
    let seq = u64::from_be_bytes(tail.try_into().unwrap_or_default());
    // The byte before the sequence is the separator.
    let conn = head.split_last().map_or(head, |(_, conn)| conn);
    (String::from_utf8_lossy(conn).into_owned(), seq)
}

pub fn outbox_prefix(connector: &str) -> Vec<u8> {
    join(&[connector.as_bytes(), b""])
}

/// `Pushed`: record -> for each (connector, object), what that system holds and what is
/// queued. Only in stores written before these states moved into the record's own value
/// ([`encode_record`]); the next write of the record moves them and drops this key.
pub fn sync_key(record: Uuid) -> Vec<u8> {
    record.as_bytes().to_vec()
}

/// A record's sync states by (connector, object).
pub type SyncStates = std::collections::BTreeMap<(String, String), SyncState>;

/// `Audit`: (record, source time, digest) -> entry; a record's trail in time order,
/// and a deterministic key so replaying a page never adds an entry twice.
pub fn audit_key(record: Uuid, ts: i64, digest: &[u8]) -> Vec<u8> {
    let mut k = record.as_bytes().to_vec();
    k.extend_from_slice(&(ts as u64 ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(digest.get(..8).unwrap_or(digest));
    k
}

/// `History`: (record, source time, field) -> [`HistoryEntry`]; a revenue record's values
/// in the order they took effect, so its state at any instant is one prefix scan. The key
/// is deterministic: a replayed page writes the same entry again, never a second one.
pub fn history_key(record: Uuid, ts: i64, field: &str) -> Vec<u8> {
    let mut k = history_prefix(record);
    k.extend_from_slice(&(ts as u64 ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(field.as_bytes());
    k
}

pub fn history_prefix(record: Uuid) -> Vec<u8> {
    record.as_bytes().to_vec()
}

/// A [`history_key`] read back: the time and the field.
pub fn split_history_key(key: &[u8]) -> Option<(i64, &str)> {
    let ts: [u8; 8] = key.get(16..24)?.try_into().ok()?;
    let field = std::str::from_utf8(key.get(24..)?).ok()?;
    Some(((u64::from_be_bytes(ts) ^ (1 << 63)) as i64, field))
}

/// The kinds whose values are kept with the time they changed: what the revenue KPIs read
/// as of a past instant (KPIS.md). People and companies keep only today's values (their
/// overwritten ones are in the audit trail, which retention may prune).
pub fn keeps_history(kind: revsync_sdk::Kind) -> bool {
    use revsync_sdk::Kind;
    matches!(
        kind,
        Kind::Deal | Kind::Subscription | Kind::Invoice | Kind::Ticket
    )
}

/// A value a field took, and the system that said so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub value: revsync_sdk::Value,
    pub connector: String,
}

pub fn cursor_key(connector: &str, object: &str) -> Vec<u8> {
    join(&[connector.as_bytes(), object.as_bytes()])
}

pub const META_OUTBOX_SEQ: &[u8] = b"outbox_seq";
/// Present once any record was made with a `route:` (workflows): until then a create
/// need not look for one.
pub const META_ROUTES: &[u8] = b"routes";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PushOp {
    /// Create (no link yet) or update every link of the record in that object.
    Upsert,
    /// Delete this copy (delete policy `propagate`).
    Delete { external_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub record: Uuid,
    pub object: String,
    pub op: PushOp,
    /// Hash of the projection when enqueued; the dispatcher recomputes at push time.
    pub hash: Hash,
    pub enqueued_ts: i64,
    /// Failed attempts so far; retries wait until `not_before` (microseconds).
    pub attempts: u32,
    pub not_before: i64,
}

/// A push the target system refused for good, kept with what was sent and the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub entry: OutboxEntry,
    /// The fields sent, as JSON text.
    pub request: String,
    /// Error class (`permanent`, `not_found`) and detail.
    pub class: String,
    pub detail: String,
    pub status: Option<u16>,
    pub response: Option<String>,
    pub failed_ts: i64,
}

/// `DeadLetters`: (connector, original outbox sequence) -> dead letter.
pub fn dead_letter_key(connector: &str, seq: u64) -> Vec<u8> {
    outbox_key(connector, seq)
}

/// Per (connector, object, record): the projection hash the system is known to hold,
/// the last one queued for it, the ones revsync sent it since it last said something
/// of its own (ADR 0025), and the identity keys each copy there reported (ADR 0026).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    pub held: Option<Hash>,
    pub queued: Option<Hash>,
    /// Projections pushed (or being pushed) to the system, oldest first, at most
    /// [`MAX_SENT`]. A read that maps to one of them is revsync's own write coming back.
    pub sent: Vec<Hash>,
    /// Per copy (external id): the index keys of its own identifying values (its email,
    /// its domains), whether or not they won the merge. The record stays findable by
    /// every one of them, not only by the canonical value.
    pub keys: BTreeMap<String, Vec<Vec<u8>>>,
    /// When (revsync's clock, µs) the last projection in `sent` was marked: a report of
    /// something else, stamped in that second or later, is a state after the send even
    /// when the system's clock has only whole seconds (ADR 0051).
    pub sent_at: Option<i64>,
    /// Projections revsync sent before the one the copy confirmed last (at most
    /// [`MAX_SENT`], newest last). A late read of one is an older state of revsync's own
    /// writes, never the system's edit after them (ADR 0051).
    pub earlier: Vec<Hash>,
}

/// Sent projections kept per copy: a push retried after a timeout may have landed too,
/// so more than the last one can come back.
pub const MAX_SENT: usize = 4;

/// A sync state as stored before `sent` (tag 0xC2 records and `Pushed` values).
#[derive(Deserialize)]
struct SyncStateV1 {
    held: Option<Hash>,
    queued: Option<Hash>,
}

impl From<SyncStateV1> for SyncState {
    /// Nothing is known to be in flight.
    fn from(v: SyncStateV1) -> Self {
        SyncState {
            held: v.held,
            queued: v.queued,
            ..SyncState::default()
        }
    }
}

/// A sync state as stored before `keys` (tag 0xC3 records).
#[derive(Deserialize)]
struct SyncStateV2 {
    held: Option<Hash>,
    queued: Option<Hash>,
    sent: Vec<Hash>,
}

impl From<SyncStateV2> for SyncState {
    /// No copy's keys: each arrives with the copy's next report (until then the canonical
    /// values are indexed, as before).
    fn from(v: SyncStateV2) -> Self {
        SyncState {
            held: v.held,
            queued: v.queued,
            sent: v.sent,
            ..SyncState::default()
        }
    }
}

/// A sync state as stored before `sent_at` (tag 0xC4 records).
#[derive(Deserialize)]
struct SyncStateV3 {
    held: Option<Hash>,
    queued: Option<Hash>,
    sent: Vec<Hash>,
    keys: BTreeMap<String, Vec<Vec<u8>>>,
}

impl From<SyncStateV3> for SyncState {
    /// No send time: a report is judged by its stamp alone until the next send.
    fn from(v: SyncStateV3) -> Self {
        SyncState {
            held: v.held,
            queued: v.queued,
            sent: v.sent,
            keys: v.keys,
            sent_at: None,
            earlier: Vec::new(),
        }
    }
}

/// Sync states in an older shape, brought to today's.
fn decode_sync_states_as<'a, T: Deserialize<'a> + Into<SyncState>>(
    bytes: &'a [u8],
) -> Result<SyncStates, postcard::Error> {
    let old: BTreeMap<(String, String), T> = decode(bytes)?;
    Ok(old.into_iter().map(|(k, v)| (k, v.into())).collect())
}

/// Sync states written before `sent` existed.
pub fn decode_sync_states_v1(bytes: &[u8]) -> Result<SyncStates, postcard::Error> {
    decode_sync_states_as::<SyncStateV1>(bytes)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditEvent {
    /// A value replaced by another: the old one is kept here.
    Overwritten {
        field: String,
        old: FieldEntry,
        new: FieldEntry,
        reason: String,
    },
    /// An incoming value that lost the merge: kept here, so nothing is lost.
    Rejected {
        field: String,
        value: FieldEntry,
        reason: String,
    },
    /// Another record was absorbed into this one (or this one into another).
    Merged {
        survivor: Uuid,
        absorbed: Uuid,
        evidence: String,
    },
    /// A source deleted its copy.
    LinkRemoved { link: Link, policy: String },
    /// A bad value in a source record, skipped (the rest of the record applied).
    Invalid {
        connector: String,
        problem: String,
        at: Provenance,
    },
    /// A copy no exact key placed joined this record on its scored match (new variants
    /// go last: stored entries name theirs by position).
    Matched { link: Link, evidence: String },
    /// An operator undid a merge: `split` (a copy that had joined, or a record that had
    /// been absorbed) is a record of its own again, never merged with `survivor` again.
    Unmerged {
        survivor: Uuid,
        split: Uuid,
        link: Option<Link>,
        by: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub record: Uuid,
    pub observed_ts: i64,
    pub event: AuditEvent,
}

/// First byte of a `Records` value that carries the record's sync states after it. A
/// record alone, as stores written before kept it (its states in `Pushed`), starts with
/// the length of its id (16).
const RECORD_TAG_V1: u8 = 0xC2;
/// The same, with each sync state's sent projections (ADR 0025).
const RECORD_TAG_V2: u8 = 0xC3;
/// The same, with each copy's identity keys (ADR 0026).
const RECORD_TAG_V3: u8 = 0xC4;
/// The same, with the time of the last send (ADR 0051).
const RECORD_TAG: u8 = 0xC5;

/// A `Records` value: the record, then its sync states. One key per record holds both, so
/// a change writes one value for them instead of two (ADR 0015).
pub fn encode_record(rec: &Record, sync: &SyncStates) -> Vec<u8> {
    encode_onto(sync, encode_onto(rec, vec![RECORD_TAG]))
}

/// The record alone.
pub fn decode_record(bytes: &[u8]) -> Result<Record, postcard::Error> {
    match bytes.split_first() {
        Some((&(RECORD_TAG | RECORD_TAG_V3 | RECORD_TAG_V2 | RECORD_TAG_V1), rest)) => {
            postcard::take_from_bytes(rest).map(|(r, _)| r)
        }
        _ => decode(bytes),
    }
}

/// The kind of the record in a `Records` value, read from its first fields without
/// decoding the rest: a walk over one kind skips the others for the cost of a few bytes.
pub fn decode_record_kind(bytes: &[u8]) -> Result<revsync_sdk::Kind, postcard::Error> {
    /// The leading fields of [`Record`], in its order: postcard is positional.
    #[derive(Deserialize)]
    struct Head {
        _id: Uuid,
        kind: revsync_sdk::Kind,
    }
    let rest = match bytes.split_first() {
        Some((&(RECORD_TAG | RECORD_TAG_V3 | RECORD_TAG_V2 | RECORD_TAG_V1), rest)) => rest,
        _ => bytes,
    };
    postcard::take_from_bytes::<Head>(rest).map(|(h, _)| h.kind)
}

/// The record and its sync states; `None` for a value written before they moved in here
/// (its states are then under the record's key in `Pushed`).
pub fn decode_record_and_sync(
    bytes: &[u8],
) -> Result<(Record, Option<SyncStates>), postcard::Error> {
    match bytes.split_first() {
        Some((&RECORD_TAG, rest)) => {
            let (rec, rest) = postcard::take_from_bytes(rest)?;
            Ok((rec, Some(decode(rest)?)))
        }
        Some((&RECORD_TAG_V3, rest)) => {
            let (rec, rest) = postcard::take_from_bytes(rest)?;
            Ok((rec, Some(decode_sync_states_as::<SyncStateV3>(rest)?)))
        }
        Some((&RECORD_TAG_V2, rest)) => {
            let (rec, rest) = postcard::take_from_bytes(rest)?;
            Ok((rec, Some(decode_sync_states_as::<SyncStateV2>(rest)?)))
        }
        Some((&RECORD_TAG_V1, rest)) => {
            let (rec, rest) = postcard::take_from_bytes(rest)?;
            Ok((rec, Some(decode_sync_states_v1(rest)?)))
        }
        _ => Ok((decode(bytes)?, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8) -> OutboxEntry {
        OutboxEntry {
            record: Uuid::from_bytes([n; 16]),
            object: "contacts".into(),
            op: PushOp::Upsert,
            hash: [n; 16],
            enqueued_ts: 7,
            attempts: 0,
            not_before: 0,
        }
    }

    #[test]
    fn an_outbox_chunk_reads_back_and_so_does_a_single_entry_from_before_chunks() {
        let key = outbox_key("zendesk-main", 12);
        let chunk = vec![(10, entry(1)), (12, entry(2))];
        assert_eq!(
            decode_outbox_chunk(&key, &encode_outbox_chunk(&chunk)).unwrap(),
            chunk
        );
        // A store written before chunks: one entry per key, its sequence in the key.
        assert_eq!(
            decode_outbox_chunk(&key, &encode(&entry(3))).unwrap(),
            vec![(12, entry(3))]
        );
        assert!(decode_outbox_chunk(&key, &[OUTBOX_CHUNK_TAG, 0xff]).is_err());
    }

    #[test]
    fn the_kind_reads_from_the_head_of_every_record_shape() {
        let mut rec = Record::new(Uuid::from_bytes([9; 16]), revsync_sdk::Kind::Deal, 1);
        rec.links.push(Link {
            connector: "hubspot-main".into(),
            object: "deals".into(),
            external_id: "7".into(),
            source_ts: 3,
        });
        let deal = revsync_sdk::Kind::Deal;
        assert_eq!(
            decode_record_kind(&encode_record(&rec, &SyncStates::new())).unwrap(),
            deal
        );
        // Before the record carried its sync states: the record alone, no tag.
        assert_eq!(decode_record_kind(&encode(&rec)).unwrap(), deal);
        assert!(decode_record_kind(&[RECORD_TAG, 16, 1]).is_err());
    }

    #[test]
    fn a_record_written_before_sent_projections_reads_back_with_none() {
        let rec = Record::new(Uuid::from_bytes([7; 16]), revsync_sdk::Kind::Person, 1);
        let key = ("salesforce-main".to_owned(), "Contact".to_owned());
        // Tag 0xC2: the record, then per copy (held, queued) only.
        let old =
            std::collections::BTreeMap::from([(key.clone(), (Some([1u8; 16]), None::<Hash>))]);
        let bytes = postcard::to_extend(&rec, vec![RECORD_TAG_V1]).unwrap();
        let bytes = postcard::to_extend(&old, bytes).unwrap();
        let (back, states) = decode_record_and_sync(&bytes).unwrap();
        assert_eq!(back, rec);
        let st = SyncState {
            held: Some([1; 16]),
            ..SyncState::default()
        };
        assert_eq!(states.unwrap()[&key], st);
        assert_eq!(decode_record(&bytes).unwrap(), rec);

        let mut now = SyncStates::new();
        now.insert(
            key.clone(),
            SyncState {
                sent: vec![[2; 16]],
                ..st
            },
        );
        let (back, states) = decode_record_and_sync(&encode_record(&rec, &now)).unwrap();
        assert_eq!((back, states), (rec.clone(), Some(now.clone())));

        // Tag 0xC3: with sent projections, without copies' keys.
        let v2 = std::collections::BTreeMap::from([(
            key.clone(),
            (Some([1u8; 16]), None::<Hash>, vec![[2u8; 16]]),
        )]);
        let bytes = postcard::to_extend(&rec, vec![RECORD_TAG_V2]).unwrap();
        let bytes = postcard::to_extend(&v2, bytes).unwrap();
        assert_eq!(
            decode_record_and_sync(&bytes).unwrap(),
            (rec.clone(), Some(now.clone()))
        );

        // Tag 0xC4: with copies' keys, without the time of the last send.
        let mut keyed = now;
        if let Some(s) = keyed.get_mut(&key) {
            s.keys.insert("003A".into(), vec![b"e/a@b.co".to_vec()]);
        }
        let v3 = std::collections::BTreeMap::from([(
            key.clone(),
            (
                Some([1u8; 16]),
                None::<Hash>,
                vec![[2u8; 16]],
                keyed[&key].keys.clone(),
            ),
        )]);
        let bytes = postcard::to_extend(&rec, vec![RECORD_TAG_V3]).unwrap();
        let bytes = postcard::to_extend(&v3, bytes).unwrap();
        assert_eq!(
            decode_record_and_sync(&bytes).unwrap(),
            (rec.clone(), Some(keyed.clone()))
        );

        // Today's: the time of the last send and the earlier sends come back.
        if let Some(s) = keyed.get_mut(&key) {
            s.sent_at = Some(1_800_000_000_123_456);
            s.earlier = vec![[3; 16]];
        }
        let (back, states) = decode_record_and_sync(&encode_record(&rec, &keyed)).unwrap();
        assert_eq!((back, states), (rec, Some(keyed)));
    }
}
