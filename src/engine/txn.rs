//! One page's worth of engine work: reads see the page's own earlier writes, and
//! everything is handed to the store as one atomic batch at the end.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use revsync_sdk::{Change, FieldEntry, Kind, Link, Provenance, Record, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::codec::{
    self, index, keeps_history, AuditEntry, AuditEvent, Hash, OutboxEntry, PushOp, SyncState,
};
use super::counts::Moves;
use super::mapping::{Mappings, ObjectMapping};
use super::policy::{decide, Decision, Policies};
use super::{normalize, uuid_from, ApplyReport, EngineError, Projection};
use crate::config::{DeletePolicy, Direction};
use crate::store::{Store, Table, WriteBatch};

mod acts;
mod scored;
mod unmerge;
pub use acts::{diff, Act, ActOutcome, Event, FieldChange, WORKFLOW_PREFIX};
use scored::Scored;
pub use unmerge::Unmerged;

const MICROS_PER_SECOND: i64 = 1_000_000;

/// What a copy's report is, against what revsync sent that copy (ADR 0025, 0051).
#[derive(Clone, Copy, PartialEq, Eq)]
enum CopyReport {
    /// A projection revsync sent: its own write coming back.
    Echo,
    /// The system changed what revsync had told it, after it was told: newer than the
    /// values it was told, even when its stamp is not.
    EditedAfterSync,
    /// Anything else: judged by its stamp.
    Other,
}

/// What a record is indexed under: identity keys, and the records it refers to.
pub(super) struct Indexed {
    keys: BTreeSet<Vec<u8>>,
    refs: BTreeSet<Uuid>,
    /// Scored identity block entries, with the compared values they hold.
    blocks: BTreeMap<Vec<u8>, Vec<u8>>,
}

pub(super) struct Txn<'a> {
    store: &'a dyn Store,
    mappings: &'a Mappings,
    policies: &'a Policies,
    now: i64,
    seq: u64,
    records: HashMap<Uuid, Record>,
    /// Records read from the store and not changed by this page: the store does not
    /// change under a page (one writer), so each is read once.
    clean: RefCell<HashMap<Uuid, Record>>,
    dirty: BTreeSet<Uuid>,
    /// Records created in this page: nothing about them is in the store yet.
    fresh: std::collections::HashSet<Uuid>,
    /// Sync states of the records this page touched, written back at the end.
    sync: HashMap<Uuid, codec::SyncStates>,
    sync_dirty: BTreeSet<Uuid>,
    /// Sync states read with their record from the store and not yet in `sync`: the
    /// record's value holds both, so reading one reads the other.
    stored_sync: RefCell<HashMap<Uuid, codec::SyncStates>>,
    /// Records whose sync states were still under their own key in `Pushed` (a store
    /// written before they moved into the record): that key goes when the record is written.
    legacy_sync: RefCell<HashSet<Uuid>>,
    /// Writes to the other tables, per table, so reads and prefix scans see them without
    /// building an owned key.
    kv: BTreeMap<Table, BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    /// Outbox entries queued by this write, per connector, written as chunks at the end.
    queued: BTreeMap<String, Vec<(u64, OutboxEntry)>>,
    /// Stored outbox entries this write drops (`None`) or rewrites, per connector.
    outbox_edits: BTreeMap<String, BTreeMap<u64, Option<OutboxEntry>>>,
    /// What this write does to the outbox and dead-letter counts.
    moves: Moves,
    /// Per (connector, object) read so far: whether it has tombstones, stored or written
    /// by this page. A page is one object, so a short list.
    tombstones: Vec<(String, String, bool)>,
    /// Write an event per changed record, at this depth (`None`: nobody consumes them),
    /// and whether the change comes from a connector's first full read.
    events: Option<(u8, bool)>,
    /// Some record was made with a `route:` (read before a create, else skipped).
    routes: bool,
}

fn corrupt(table: &'static str) -> impl Fn(postcard::Error) -> EngineError {
    move |e| EngineError::Corrupt {
        table,
        detail: e.to_string(),
    }
}

/// What a projection looks like, to tell whether a push would change anything: the
/// first half of a SHA-256 of the object and its fields as JSON. Stored hashes (held,
/// queued, sent) compare against it, so the bytes hashed must never change; they are
/// streamed into the digest rather than built as a buffer first.
#[allow(
    clippy::expect_used,
    reason = "JSON of a string and a string-keyed map of JSON values into a digest cannot fail"
)]
fn projection_hash(object: &str, proj: &Projection) -> Hash {
    let mut digest = Sha256::new();
    serde_json::to_writer(&mut digest, &(object, proj)).expect("projections serialize");
    digest.finalize().first_chunk().copied().unwrap_or_default()
}

impl<'a> Txn<'a> {
    pub fn new(
        store: &'a dyn Store,
        mappings: &'a Mappings,
        policies: &'a Policies,
        now: i64,
        seq: u64,
    ) -> Self {
        Self {
            store,
            mappings,
            policies,
            now,
            seq,
            records: HashMap::new(),
            clean: RefCell::new(HashMap::new()),
            dirty: BTreeSet::new(),
            fresh: std::collections::HashSet::new(),
            sync: HashMap::new(),
            sync_dirty: BTreeSet::new(),
            stored_sync: RefCell::new(HashMap::new()),
            legacy_sync: RefCell::new(HashSet::new()),
            kv: BTreeMap::new(),
            queued: BTreeMap::new(),
            outbox_edits: BTreeMap::new(),
            moves: Moves::default(),
            tombstones: Vec::new(),
            events: None,
            routes: false,
        }
    }

    /// Records made with a route exist: a create checks the record's route first.
    pub fn with_routes(&mut self, routes: bool) {
        self.routes = routes;
    }

    /// Describe each changed record in an event (Table::Events), written with the rest;
    /// `depth` counts the consumer writes that led here.
    pub fn emit_events(&mut self, depth: u8, backfill: bool) {
        self.events = Some((depth, backfill));
    }

    // ---- reads and writes through the overlay

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        if let Some(v) = self.kv.get(&table).and_then(|t| t.get(key)) {
            return Ok(v.clone());
        }
        Ok(self.store.get(table, key)?)
    }

    fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.kv.entry(table).or_default().insert(key, Some(value));
    }

    fn del(&mut self, table: Table, key: Vec<u8>) {
        self.kv.entry(table).or_default().insert(key, None);
    }

    fn get_id(&self, table: Table, key: &[u8]) -> Result<Option<Uuid>, EngineError> {
        self.get(table, key)?.map(|b| uuid_from(&b)).transpose()
    }

    fn load(&self, id: Uuid) -> Result<Option<Record>, EngineError> {
        if let Some(r) = self.records.get(&id) {
            return Ok(Some(r.clone()));
        }
        self.read_stored(id)
    }

    /// A record as stored, keeping its sync states aside for [`Txn::sync_states`].
    fn read_stored(&self, id: Uuid) -> Result<Option<Record>, EngineError> {
        self.with_stored(id, Record::clone)
    }

    /// `f` of a record as stored. The store is read once per page and record: an update
    /// follows its record's merges, reads its links and then loads it, all from one read.
    /// A `f` must not reach back into the page.
    fn with_stored<T>(
        &self,
        id: Uuid,
        f: impl FnOnce(&Record) -> T,
    ) -> Result<Option<T>, EngineError> {
        if let Some(r) = self.clean.borrow().get(&id) {
            return Ok(Some(f(r)));
        }
        let Some(stored) = super::read_record_and_sync(self.store, id)? else {
            return Ok(None);
        };
        if stored.legacy_sync {
            self.legacy_sync.borrow_mut().insert(id);
        }
        if !self.sync.contains_key(&id) {
            self.stored_sync.borrow_mut().insert(id, stored.sync);
        }
        let out = f(&stored.record);
        self.clean.borrow_mut().insert(id, stored.record);
        Ok(Some(out))
    }

    /// A record as this page has it: borrowed when the page holds it (the one copy made
    /// otherwise leaves the page free to read more while it is used).
    fn record_ref(&self, id: Uuid) -> Result<Option<Cow<'_, Record>>, EngineError> {
        if let Some(r) = self.records.get(&id) {
            return Ok(Some(Cow::Borrowed(r)));
        }
        Ok(self.read_stored(id)?.map(Cow::Owned))
    }

    /// `f` of a record as this page has it, without a copy.
    fn with_record<T>(
        &self,
        id: Uuid,
        f: impl FnOnce(&Record) -> T,
    ) -> Result<Option<T>, EngineError> {
        match self.records.get(&id) {
            Some(r) => Ok(Some(f(r))),
            None => self.with_stored(id, f),
        }
    }

    /// Follow `merged_into` to the surviving record.
    fn alive(&self, mut id: Uuid) -> Result<Uuid, EngineError> {
        for _ in 0..16 {
            match self.with_record(id, |r| r.merged_into)?.flatten() {
                Some(next) => id = next,
                None => return Ok(id),
            }
        }
        Ok(id)
    }

    fn save(&mut self, rec: Record) {
        self.dirty.insert(rec.id);
        self.records.insert(rec.id, rec);
    }

    /// A record's sync states, loaded once per page (usually already read with the
    /// record). A record created in this page has none stored: no read.
    fn sync_states(&mut self, record: Uuid) -> Result<&mut codec::SyncStates, EngineError> {
        let loaded = if self.sync.contains_key(&record) {
            codec::SyncStates::new()
        } else {
            self.stored_states(record)?
        };
        Ok(self.sync.entry(record).or_insert(loaded))
    }

    fn stored_states(&self, record: Uuid) -> Result<codec::SyncStates, EngineError> {
        if self.fresh.contains(&record) {
            return Ok(codec::SyncStates::new());
        }
        if let Some(s) = self.stored_sync.borrow_mut().remove(&record) {
            return Ok(s);
        }
        self.read_stored(record)?;
        Ok(self
            .stored_sync
            .borrow_mut()
            .remove(&record)
            .unwrap_or_default())
    }

    fn sync_get(
        &mut self,
        record: Uuid,
        connector: &str,
        object: &str,
    ) -> Result<SyncState, EngineError> {
        let key = (connector.to_owned(), object.to_owned());
        Ok(self
            .sync_states(record)?
            .get(&key)
            .cloned()
            .unwrap_or_default())
    }

    fn sync_set(
        &mut self,
        record: Uuid,
        connector: &str,
        object: &str,
        st: SyncState,
    ) -> Result<(), EngineError> {
        self.sync_states(record)?
            .insert((connector.to_owned(), object.to_owned()), st);
        self.sync_dirty.insert(record);
        Ok(())
    }

    /// Keep the value a revenue record's field took (KPIs read a subscription's or a deal's
    /// state as of any instant); other kinds keep only their current values. `prior` is the
    /// value it replaces: a value that wins over a later-stamped one (a system that owns the
    /// field, or one whose clock has whole seconds, answering a rule's write made within
    /// that second) is kept just after it, so the history's last value is the current one.
    fn history(
        &mut self,
        kind: Kind,
        record: Uuid,
        field: &str,
        entry: &FieldEntry,
        prior: Option<&FieldEntry>,
    ) {
        if keeps_history(kind) {
            let value = codec::HistoryEntry {
                value: entry.value.clone(),
                connector: entry.from.connector.clone(),
            };
            let ts = match prior.map(|p| p.from.source_ts) {
                Some(p) if p >= entry.from.source_ts => p.saturating_add(1),
                _ => entry.from.source_ts,
            };
            self.put(
                Table::History,
                codec::history_key(record, ts, field),
                codec::encode(&value),
            );
        }
    }

    /// Record an audit event once. The key is derived from what the event is about (a lost
    /// value is the same entry whether it was overwritten or rejected on a replay), so
    /// replaying a page never adds entries.
    fn audit(&mut self, record: Uuid, ts: i64, event: AuditEvent) -> Result<(), EngineError> {
        let (ts, identity) = match &event {
            AuditEvent::Overwritten {
                field, old: lost, ..
            }
            | AuditEvent::Rejected {
                field, value: lost, ..
            } => (
                lost.from.source_ts,
                codec::encode(&(
                    0u8,
                    field,
                    &lost.value,
                    &lost.from.connector,
                    lost.from.source_ts,
                )),
            ),
            AuditEvent::Merged {
                survivor, absorbed, ..
            } => (ts, codec::encode(&(1u8, survivor, absorbed))),
            AuditEvent::LinkRemoved { link, .. } => (ts, codec::encode(&(2u8, link))),
            AuditEvent::Invalid {
                connector,
                problem,
                at,
            } => (ts, codec::encode(&(3u8, connector, problem, at.source_ts))),
            AuditEvent::Matched { link, .. } => (ts, codec::encode(&(4u8, link))),
            AuditEvent::Unmerged {
                survivor, split, ..
            } => (ts, codec::encode(&(5u8, survivor, split))),
        };
        let key = codec::audit_key(record, ts, &Sha256::digest(&identity));
        // Deterministic key: a replayed page finds its entry already there.
        if self.get(Table::Audit, &key)?.is_none() {
            let entry = AuditEntry {
                record,
                observed_ts: self.now,
                event,
            };
            self.put(Table::Audit, key, codec::encode(&entry));
        }
        Ok(())
    }

    fn enqueue(&mut self, connector: &str, entry: OutboxEntry) {
        self.seq += 1;
        let seq = self.seq;
        match self.queued.get_mut(connector) {
            Some(q) => q.push((seq, entry)),
            None => {
                self.queued.insert(connector.to_owned(), vec![(seq, entry)]);
            }
        }
    }

    /// Drop a queued outbox entry (pushed, dead-lettered or superseded).
    pub fn outbox_remove(&mut self, connector: &str, seq: u64) {
        if let Some(q) = self.queued.get_mut(connector) {
            q.retain(|(s, _)| *s != seq);
        }
        self.outbox_edits
            .entry(connector.to_owned())
            .or_default()
            .insert(seq, None);
    }

    /// Rewrite a queued outbox entry in place (a retry's attempt count and time).
    pub fn outbox_replace(&mut self, connector: &str, seq: u64, entry: OutboxEntry) {
        if let Some(slot) = self
            .queued
            .get_mut(connector)
            .and_then(|q| q.iter_mut().find(|(s, _)| *s == seq))
        {
            slot.1 = entry;
            return;
        }
        self.outbox_edits
            .entry(connector.to_owned())
            .or_default()
            .insert(seq, Some(entry));
    }

    /// Apply the outbox edits to the stored chunks that hold them, then queue this write's
    /// new entries as chunks.
    fn finish_outbox(&mut self, batch: &mut WriteBatch) -> Result<(), EngineError> {
        for (connector, edits) in std::mem::take(&mut self.outbox_edits) {
            let prefix = codec::outbox_prefix(&connector);
            let mut edits = edits.into_iter().peekable();
            while let Some(&(first, _)) = edits.peek() {
                // Sequences start at 1: the chunk holding `first` is the first key after it.
                let after = codec::outbox_key(&connector, first.saturating_sub(1));
                let Some((key, value)) = self
                    .store
                    .scan(Table::Outbox, &prefix, Some(&after), 1)?
                    .pop()
                else {
                    break;
                };
                let last = codec::split_seq_key(&key).1;
                let mut chunk =
                    codec::decode_outbox_chunk(&key, &value).map_err(corrupt("outbox"))?;
                let mut changed = false;
                while let Some((seq, edit)) = edits.next_if(|(s, _)| *s <= last) {
                    let Some(pos) = chunk.iter().position(|(s, _)| *s == seq) else {
                        continue;
                    };
                    match edit {
                        Some(entry) => {
                            if let Some((_, slot)) = chunk.get_mut(pos) {
                                *slot = entry;
                            }
                        }
                        None => {
                            chunk.remove(pos);
                            self.moves.outbox(&connector, -1);
                        }
                    }
                    changed = true;
                }
                if chunk.is_empty() {
                    batch.delete(Table::Outbox, key);
                } else if changed {
                    batch.put(Table::Outbox, key, codec::encode_outbox_chunk(&chunk));
                }
            }
        }
        for (connector, entries) in std::mem::take(&mut self.queued) {
            self.moves.outbox(&connector, entries.len() as i64);
            for chunk in entries.chunks(codec::OUTBOX_CHUNK_MAX) {
                let Some(&(last, _)) = chunk.last() else {
                    continue;
                };
                batch.put(
                    Table::Outbox,
                    codec::outbox_key(&connector, last),
                    codec::encode_outbox_chunk(chunk),
                );
            }
        }
        Ok(())
    }

    // ---- apply

    pub fn apply_change(
        &mut self,
        mapping: &ObjectMapping,
        delete_policy: DeletePolicy,
        change: &Change,
        report: &mut ApplyReport,
    ) -> Result<(), EngineError> {
        let (conn, obj, ext) = (
            mapping.connector.as_str(),
            mapping.object.as_str(),
            change.external_id.as_str(),
        );
        let ts = change.source_updated_at.timestamp_micros();
        let lk = codec::link_key(conn, obj, ext);
        let stored_link = self.get_id(Table::Links, &lk)?;
        let linked = match stored_link {
            Some(id) => Some(self.alive(id)?),
            None => None,
        };
        if change.deleted {
            return self.delete(mapping, delete_policy, change, linked, report);
        }
        if !mapping.admits(&change.fields) {
            report.filtered += 1;
            return Ok(());
        }

        let mut mapped = mapping.map_in(&change.fields);
        for v in mapped.values.values_mut() {
            if let Value::ExtRef {
                connector,
                object,
                id,
            } = v
            {
                if let Some(target) =
                    self.get_id(Table::Links, &codec::link_key(connector, object, id))?
                {
                    *v = Value::Ref(self.alive(target)?);
                }
            }
        }

        // An event older than what this copy already reported: its values still go through
        // the field rules (which never let a source regress itself), but it is no evidence
        // of identity: an old email must not merge strangers.
        let newest_seen = match linked {
            Some(id) => self
                .with_record(id, |r| {
                    r.links
                        .iter()
                        .find(|l| l.connector == conn && l.object == obj && l.external_id == ext)
                        .map(|l| l.source_ts)
                })?
                .flatten(),
            None => None,
        };
        let stale = newest_seen.is_some_and(|t| t > ts);
        // A report at or before the copy's newest known time is a replay (or stale): its
        // conflicts were audited when it, or its successor, was first seen.
        let seen = newest_seen.is_some_and(|t| t >= ts);
        if stale {
            report.stale += 1;
        }

        // Identity: an existing link, then exact keys, then explicit cross-system ids.
        let mut candidates: BTreeSet<Uuid> = linked.into_iter().collect();
        let mut evidence = Vec::new();
        let keys = if stale {
            Vec::new()
        } else {
            identity_keys(mapping.kind, &|f| mapped.values.get(f))
        };
        // The copy's own keys, whatever wins the merge: the record must stay findable by
        // each of them (a work email must not vanish because a billing email won).
        let copy_keys: Vec<Vec<u8>> = keys.iter().map(|(k, _)| k.clone()).collect();
        for (key, label) in keys {
            if let Some(id) = self.get_id(Table::Index, &key)? {
                candidates.insert(self.alive(id)?);
                evidence.push(label);
            }
        }
        if !stale && mapping.has_xrefs() {
            self.forget_xrefs(conn, obj, ext, mapped.xrefs.iter().cloned().collect())?;
        }
        let mut xrefs_unlinked = Vec::new();
        for (c, o, x) in mapped.xrefs.iter().filter(|_| !stale) {
            if let Some(id) = self.get_id(Table::Links, &codec::link_key(c, o, x))? {
                candidates.insert(self.alive(id)?);
                evidence.push(format!("{conn} {obj} {ext} names {c}:{o}:{x}"));
            } else {
                xrefs_unlinked.push((c.clone(), o.clone(), x.clone()));
            }
        }
        // A copy revsync created names the record it was made for: read back before the
        // create was confirmed, it joins that record instead of starting a second one.
        if let Some(made_for) = change.canonical_id.filter(|_| !stale) {
            if self.load(made_for)?.is_some() {
                candidates.insert(self.alive(made_for)?);
                evidence.push(format!("{conn} {obj} {ext} was created for {made_for}"));
            }
        }
        candidates.retain(|id| {
            self.records
                .get(id)
                .map(|r| r.kind == mapping.kind)
                .unwrap_or(true)
        });
        if candidates.len() > 1 {
            self.drop_never_pairs(&mut candidates, linked)?;
        }
        // No exact key placed it: the scored model compares it with its block candidates.
        let scored = if candidates.is_empty() && !stale {
            self.score(mapping.kind, &mapped.values)?
        } else {
            Scored::Nothing
        };
        if let Scored::Merge(to, score) = &scored {
            candidates.insert(*to);
            evidence.push(scored::describe(score));
            report.scored_merged += 1;
        }
        let id = match candidates.len() {
            0 => None,
            1 => candidates.first().copied(),
            _ => self.merge_records(&candidates, &evidence.join("; "), report)?,
        };
        let (mut rec, created) = match id.map(|id| self.load(id)).transpose()?.flatten() {
            Some(r) if r.kind == mapping.kind => (r, false),
            _ => {
                let rec = Record::new(Uuid::now_v7(), mapping.kind, self.now);
                self.fresh.insert(rec.id);
                (rec, true)
            }
        };
        let id = rec.id;
        match scored {
            Scored::Merge(_, score) => {
                let link = Link {
                    connector: conn.into(),
                    object: obj.into(),
                    external_id: ext.into(),
                    source_ts: ts,
                };
                let evidence = scored::describe(&score);
                self.audit(id, ts, AuditEvent::Matched { link, evidence })?;
            }
            Scored::Review(other, score, reason) => {
                if self.propose(mapping.kind, other, id, &score, reason)? {
                    report.to_review += 1;
                }
            }
            Scored::Vetoed(other, score, reason) => {
                report.vetoed += 1;
                tracing::debug!(record = %id, other = %other, probability = score.probability, %reason, "scored match vetoed by a guard");
            }
            Scored::Nothing => {}
        }
        // Named copies not read yet: when they are, this record and theirs merge.
        for (c, o, x) in xrefs_unlinked {
            let named_by = format!("{conn} {obj} {ext}");
            self.put(
                Table::Index,
                index::xref_waiting(&c, &o, &x, id),
                named_by.into_bytes(),
            );
        }

        let at = Provenance {
            connector: conn.to_owned(),
            source_ts: ts,
            observed_ts: self.now,
        };
        for problem in std::mem::take(&mut mapped.problems) {
            report
                .invalid
                .push(format!("{conn} {obj} {ext}: {problem}"));
            self.audit(
                id,
                ts,
                AuditEvent::Invalid {
                    connector: conn.to_owned(),
                    problem,
                    at: at.clone(),
                },
            )?;
        }

        let old_keys = self.indexed_keys(&rec)?;
        // Any copy of this record in this object counts (a create read back before its
        // confirmation is linked through its canonical id, not yet by its link).
        let report_is = if created || mapping.direction == Direction::In {
            CopyReport::Other
        } else {
            self.note_echo(mapping, &rec, &mapped.values, (ts, seen, stale))?
        };
        let echo = report_is == CopyReport::Echo;
        match (seen, echo) {
            (true, true) => report.echoed += 1,
            (true, false) => report.replayed += 1,
            _ => {}
        }
        let mut changed = false;
        // A newer assertion of the same value: nothing to push, but the record changed.
        let mut refreshed = false;
        // A copy joining a record that exists: what it changes there is journaled, so
        // `records unmerge` can undo it. A copy revsync created for the record is no merge.
        // (A joining copy's link is always added below.)
        let joining = !created
            && change.canonical_id.is_none()
            && !rec
                .links
                .iter()
                .any(|l| l.connector == conn && l.object == obj && l.external_id == ext);
        let mut journaled: Vec<(String, Option<FieldEntry>, FieldEntry)> = Vec::new();
        // Values are cloned one by one into the record: the change's own map stays whole
        // for its held projection below, without a copy of the map.
        // An echo of what revsync sent changes none of the fields it sent; the others
        // are the system's own (a status it computed) and count as read.
        for (field, value) in mapped
            .values
            .iter()
            .filter(|(f, _)| !echo || !mapping.pushes(f))
        {
            let stated_elsewhere = rec
                .fields
                .get(field)
                .is_some_and(|e| !e.value.is_empty() && e.from.connector != conn);
            if stated_elsewhere && mapped.implied.contains(field) {
                continue;
            }
            let mut incoming = FieldEntry {
                value: value.clone(),
                from: at.clone(),
            };
            if report_is == CopyReport::EditedAfterSync {
                // Told the current value, the system then changed it: its whole-second
                // stamp can still fall before the value's own time (ADR 0051).
                if let Some(cur) = rec.fields.get(field).filter(|c| c.value != *value) {
                    let after = cur.from.source_ts.saturating_add(1);
                    incoming.from.source_ts = incoming.from.source_ts.max(after);
                }
            }
            let rule = self.policies.rule(rec.kind, field);
            match decide(rule, rec.fields.get(field), &incoming) {
                Decision::Same => {}
                Decision::Refresh => {
                    if joining {
                        let old = put_field(&mut rec.fields, field, incoming.clone());
                        journaled.push((field.clone(), old, incoming));
                    } else {
                        put_field(&mut rec.fields, field, incoming);
                    }
                    refreshed = true;
                }
                Decision::Take(reason) => {
                    self.history(rec.kind, id, field, &incoming, rec.fields.get(field));
                    let old = put_field(&mut rec.fields, field, incoming.clone());
                    if joining {
                        journaled.push((field.clone(), old.clone(), incoming.clone()));
                    }
                    if let Some(old) = old.filter(|o| !o.value.is_empty()) {
                        self.audit(
                            id,
                            ts,
                            AuditEvent::Overwritten {
                                field: field.clone(),
                                old,
                                new: incoming,
                                reason: reason.into(),
                            },
                        )?;
                    }
                    changed = true;
                }
                Decision::Keep(reason) => {
                    if !incoming.value.is_empty() && !seen {
                        self.audit(
                            id,
                            ts,
                            AuditEvent::Rejected {
                                field: field.clone(),
                                value: incoming,
                                reason: reason.into(),
                            },
                        )?;
                    }
                }
            }
        }

        let link_added = match rec
            .links
            .iter_mut()
            .find(|l| l.connector == conn && l.object == obj && l.external_id == ext)
        {
            Some(l) => {
                refreshed |= ts > l.source_ts;
                l.source_ts = l.source_ts.max(ts);
                false
            }
            None => {
                rec.links.push(Link {
                    connector: conn.into(),
                    object: obj.into(),
                    external_id: ext.into(),
                    source_ts: ts,
                });
                rec.links.sort();
                true
            }
        };
        if joining {
            let own = mapped
                .values
                .iter()
                .map(|(f, v)| {
                    let entry = FieldEntry {
                        value: v.clone(),
                        from: at.clone(),
                    };
                    (f.clone(), entry)
                })
                .collect();
            let link = Link {
                connector: conn.into(),
                object: obj.into(),
                external_id: ext.into(),
                source_ts: ts,
            };
            self.journal(
                id,
                codec::MergeJournal {
                    at: self.now,
                    link: Some(link),
                    absorbed: None,
                    own,
                    changed: journaled,
                    links_added: Vec::new(),
                    referrers: Vec::new(),
                    evidence: evidence.join("; "),
                },
            )?;
        }
        // A link that already names this record is not written again (a replay, an
        // overlap window read twice).
        if stored_link != Some(id) {
            self.put(Table::Links, lk, id.as_bytes().to_vec());
        }
        if link_added && self.may_have_tombstones(conn, obj)? {
            // A copy deleted earlier and now back: its tombstone goes.
            self.del(Table::Index, index::tombstone(conn, obj, ext));
        }

        let keys_moved = !stale && self.note_copy_keys(id, conn, obj, ext, copy_keys)?;

        if created {
            report.created += 1;
        } else if stale {
        } else if changed || link_added {
            report.updated += 1;
        } else {
            report.unchanged += 1;
        }
        if changed || link_added || created {
            rec.version += 1;
            rec.updated_ts = self.now;
            self.reindex(&rec, &old_keys)?;
            self.save(rec);
            if mapping.direction != Direction::In {
                // What this system holds now, as far as we know: its own values.
                let (_, held) =
                    self.project_values(mapping, &|f| mapped.values.get(f), &|_, _| None)?;
                let mut st = self.sync_get(id, conn, obj)?;
                st.held = Some(held);
                self.sync_set(id, conn, obj, st)?;
            }
            report.enqueued += self.enqueue_projections(id)?;
            if link_added || created {
                // Records referring to this copy, or to this record, can now name it in
                // this system: their projections there change.
                let mut waiting = self.resolve_waiting(conn, obj, ext, id)?;
                if !created {
                    waiting.extend(self.referrers(id)?);
                }
                waiting.remove(&id);
                for r in waiting {
                    report.enqueued += self.enqueue_projections(r)?;
                }
                self.merge_xref_waiting(conn, obj, ext, id, report)?;
            }
        } else {
            if keys_moved {
                self.reindex(&rec, &old_keys)?;
            }
            // The stale check keeps the newest source time per link even when nothing else
            // changed; a report that moved nothing (a replay) leaves the record as stored.
            if refreshed {
                self.save(rec);
            }
        }
        Ok(())
    }

    /// An operator's edit of canonical fields (the console's grid): each value goes
    /// through the field rules a system's value would, with `source` as its provenance
    /// and now as its time, and every system holding a copy gets the new projection. A
    /// field the rules keep is answered with the reason, not written.
    pub fn apply_edit(
        &mut self,
        id: Uuid,
        values: &BTreeMap<String, Value>,
        source: &str,
    ) -> Result<Option<Vec<EditOutcome>>, EngineError> {
        let id = self.alive(id)?;
        let Some(mut rec) = self.load(id)? else {
            return Ok(None);
        };
        let at = Provenance {
            connector: source.to_owned(),
            source_ts: self.now,
            observed_ts: self.now,
        };
        let old_keys = self.indexed_keys(&rec)?;
        let mut outcomes = Vec::with_capacity(values.len());
        let mut changed = false;
        for (field, value) in values {
            let incoming = FieldEntry {
                value: value.clone(),
                from: at.clone(),
            };
            let rule = self.policies.rule(rec.kind, field);
            let outcome = match decide(rule, rec.fields.get(field), &incoming) {
                Decision::Same => EditOutcome::Same,
                Decision::Refresh => {
                    put_field(&mut rec.fields, field, incoming);
                    EditOutcome::Same
                }
                Decision::Take(_) => {
                    self.history(rec.kind, id, field, &incoming, rec.fields.get(field));
                    let old = put_field(&mut rec.fields, field, incoming.clone());
                    if let Some(old) = old.filter(|o| !o.value.is_empty()) {
                        self.audit(
                            id,
                            self.now,
                            AuditEvent::Overwritten {
                                field: field.clone(),
                                old,
                                new: incoming,
                                reason: format!("edited by {source}"),
                            },
                        )?;
                    }
                    changed = true;
                    EditOutcome::Written
                }
                Decision::Keep(reason) => EditOutcome::Kept(reason),
            };
            outcomes.push(outcome);
        }
        if changed {
            rec.version += 1;
            rec.updated_ts = self.now;
            self.reindex(&rec, &old_keys)?;
            self.save(rec);
            self.enqueue_projections(id)?;
        }
        Ok(Some(outcomes))
    }

    /// Whether any copy of `connector`'s `object` was ever deleted (its tombstone may be
    /// there). Until one is, a new link has no tombstone to remove: one prefix read per
    /// page and object instead of a delete per new link (an initial sync links every copy).
    fn may_have_tombstones(&mut self, connector: &str, object: &str) -> Result<bool, EngineError> {
        if let Some((.., any)) = self
            .tombstones
            .iter()
            .find(|(c, o, _)| c == connector && o == object)
        {
            return Ok(*any);
        }
        let any = !self
            .store
            .scan(
                Table::Index,
                &index::tombstones_of(connector, object),
                None,
                1,
            )?
            .is_empty();
        self.note_tombstones(connector, object, any);
        Ok(any)
    }

    fn note_tombstones(&mut self, connector: &str, object: &str, any: bool) {
        match self
            .tombstones
            .iter_mut()
            .find(|(c, o, _)| c == connector && o == object)
        {
            Some((.., known)) => *known |= any,
            None => self
                .tombstones
                .push((connector.to_owned(), object.to_owned(), any)),
        }
    }

    /// Keep what a copy's own identifying values are; whether they changed.
    fn note_copy_keys(
        &mut self,
        id: Uuid,
        conn: &str,
        obj: &str,
        ext: &str,
        mut keys: Vec<Vec<u8>>,
    ) -> Result<bool, EngineError> {
        keys.sort();
        keys.dedup();
        let mut st = self.sync_get(id, conn, obj)?;
        if st.keys.get(ext).map_or(keys.is_empty(), |k| *k == keys) {
            return Ok(false);
        }
        if keys.is_empty() {
            st.keys.remove(ext);
        } else {
            st.keys.insert(ext.to_owned(), keys);
        }
        self.sync_set(id, conn, obj, st)?;
        Ok(true)
    }

    /// The keys a record is found by: its canonical identifying values and every linked
    /// copy's own (ADR 0026); and the records it refers to.
    fn indexed_keys(&mut self, rec: &Record) -> Result<Indexed, EngineError> {
        let mut keys: BTreeSet<Vec<u8>> = identity_keys(rec.kind, &|f| rec.value(f))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for st in self.sync_states(rec.id)?.values() {
            keys.extend(st.keys.values().flatten().cloned());
        }
        let refs = rec
            .fields
            .values()
            .filter_map(|e| match e.value {
                Value::Ref(target) => Some(target),
                _ => None,
            })
            .collect();
        let blocks = self.block_entries(rec);
        Ok(Indexed { keys, refs, blocks })
    }

    /// Whether a copy's report is revsync's own write coming back (ADR 0025): its
    /// projection is one revsync sent there, in flight or confirmed. Its source time is
    /// the system's stamp of that write, which can be later than a newer edit made
    /// elsewhere meanwhile, so it must change no value: it only says what the system holds.
    /// A report of something else, new and not what the copy already held, is the
    /// system's own: what was sent before no longer tells an echo.
    ///
    /// Such an edit is [`CopyReport::EditedAfterSync`] when the copy held the record's
    /// canonical projection and the report is stamped in the second of revsync's last
    /// send there or later: the system changed what it was told after it was told, so it
    /// is newer than the values it was told, whatever its clock's precision (ADR 0051).
    fn note_echo(
        &mut self,
        mapping: &ObjectMapping,
        rec: &Record,
        values: &BTreeMap<String, Value>,
        (ts, seen, stale): (i64, bool, bool),
    ) -> Result<CopyReport, EngineError> {
        let (conn, obj) = (mapping.connector.as_str(), mapping.object.as_str());
        let mut st = self.sync_get(rec.id, conn, obj)?;
        if st.sent.is_empty() {
            return Ok(CopyReport::Other);
        }
        let (_, hash) = self.project_values(mapping, &|f| values.get(f), &|_, _| None)?;
        if st.sent.contains(&hash) {
            if st.held == Some(hash) {
                return Ok(CopyReport::Echo);
            }
            st.held = Some(hash);
            self.sync_set(rec.id, conn, obj, st)?;
            return Ok(CopyReport::Echo);
        }
        if st.held == Some(hash) {
            return Ok(CopyReport::Other);
        }
        let after_send = !stale
            && st.held.is_some()
            && !st.earlier.contains(&hash)
            && st
                .sent_at
                .is_some_and(|t| ts >= t - t.rem_euclid(MICROS_PER_SECOND))
            && st.held == Some(self.project(mapping, rec, &|_, _| None)?.1);
        if seen && !after_send {
            return Ok(CopyReport::Other);
        }
        st.sent.clear();
        self.sync_set(rec.id, conn, obj, st)?;
        Ok(if after_send {
            CopyReport::EditedAfterSync
        } else {
            CopyReport::Other
        })
    }

    /// Record that projections are being sent to `connector`'s `object` (before the push
    /// goes out), so that reading them back before the confirmation is recorded, or after
    /// a newer edit, is known as an echo.
    pub fn mark_sent(
        &mut self,
        connector: &str,
        object: &str,
        record: Uuid,
        hash: Hash,
    ) -> Result<(), EngineError> {
        let id = self.alive(record)?;
        let mut st = self.sync_get(id, connector, object)?;
        if st.sent.last() == Some(&hash) {
            return Ok(());
        }
        st.sent.retain(|h| *h != hash);
        st.sent.push(hash);
        if st.sent.len() > codec::MAX_SENT {
            st.sent.remove(0);
        }
        st.sent_at = Some(self.now);
        self.sync_set(id, connector, object, st)
    }

    /// Point identity keys and reverse relations at the record's current values. `old`
    /// is what the record was indexed under before this change: those entries are in the
    /// index already (identity keys name the record, referrer entries are dropped only
    /// with the relation they index), so only what is new is written. A record's next
    /// change therefore no longer re-puts keys an older release did not index: a release
    /// that widens the identity rules (a domain taken off the free-mail list) must index
    /// existing records itself.
    fn reindex(&mut self, rec: &Record, old: &Indexed) -> Result<(), EngineError> {
        let new = self.indexed_keys(rec)?;
        for k in old.keys.difference(&new.keys) {
            if self.get_id(Table::Index, k)? == Some(rec.id) {
                self.del(Table::Index, k.clone());
            }
        }
        for k in new.keys.difference(&old.keys) {
            self.put(Table::Index, k.clone(), rec.id.as_bytes().to_vec());
        }
        for k in old.blocks.keys() {
            if !new.blocks.contains_key(k) {
                self.del(Table::Index, k.clone());
            }
        }
        for (k, v) in &new.blocks {
            if old.blocks.get(k) != Some(v) {
                self.put(Table::Index, k.clone(), v.clone());
            }
        }
        for target in new.refs.difference(&old.refs) {
            self.put(Table::Index, index::referrer(*target, rec.id), Vec::new());
        }
        for e in rec.fields.values() {
            if let Value::ExtRef {
                connector,
                object,
                id,
            } = &e.value
            {
                self.put(
                    Table::Index,
                    index::waiting(connector, object, id, rec.id),
                    Vec::new(),
                );
            }
        }
        Ok(())
    }

    /// Queue a push to every system whose projection of the record differs from what it
    /// holds and from what is already queued for it.
    fn enqueue_projections(&mut self, id: Uuid) -> Result<usize, EngineError> {
        // Projections first, reading the record where it is (no copy of one this page
        // already holds); the sync states they are checked against after.
        let mut wanted: Vec<(&'a ObjectMapping, Hash)> = Vec::new();
        {
            let Some(rec) = self.record_ref(id)? else {
                return Ok(0);
            };
            let rec = rec.as_ref();
            if rec.merged_into.is_some() {
                return Ok(0);
            }
            let mappings = self.mappings;
            let targets: Vec<&'a ObjectMapping> = mappings.outbound(rec.kind).collect();
            for (i, m) in targets.iter().enumerate() {
                // One copy per system: a person that is a Salesforce Contact is not also
                // created as a Lead; with no copy there yet, only the first object whose
                // `create_when:` takes the record creates.
                let first_for_connector = !targets
                    .iter()
                    .take(i)
                    .any(|t| t.connector == m.connector && t.creates(rec));
                if super::copy_elsewhere(rec, &m.connector, &m.object)
                    || (rec.link(&m.connector, &m.object).is_none()
                        && !(first_for_connector
                            && m.creates(rec)
                            && self.routed_to(rec.id, &m.connector)?))
                {
                    continue;
                }
                let (proj, hash) = self.project(m, rec, &|_, _| None)?;
                if !proj.is_empty() && m.admits_out(&proj) {
                    wanted.push((m, hash));
                }
            }
        }
        let mut n = 0;
        for (m, hash) in wanted {
            let mut st = self.sync_get(id, &m.connector, &m.object)?;
            if st.held == Some(hash) || st.queued == Some(hash) {
                continue;
            }
            st.queued = Some(hash);
            self.sync_set(id, &m.connector, &m.object, st)?;
            let entry = OutboxEntry {
                record: id,
                object: m.object.clone(),
                op: PushOp::Upsert,
                hash,
                enqueued_ts: self.now,
                attempts: 0,
                not_before: 0,
            };
            self.enqueue(&m.connector, entry);
            n += 1;
        }
        Ok(n)
    }

    pub fn project(
        &self,
        m: &ObjectMapping,
        rec: &Record,
        unlinked: &dyn Fn(Uuid, &str) -> Option<String>,
    ) -> Result<(Projection, Hash), EngineError> {
        self.project_values(m, &|f| rec.value(f), unlinked)
    }

    /// A copy's own values as revsync would write them there: what it holds, in the
    /// same terms as a projection (normalized, relations by that system's ids).
    pub fn copy_projection(
        &self,
        m: &ObjectMapping,
        fields: &BTreeMap<String, serde_json::Value>,
    ) -> Result<Projection, EngineError> {
        let mapped = m.map_in(fields);
        self.project_values(m, &|f| mapped.values.get(f), &|_, _| None)
            .map(|(p, _)| p)
    }

    /// `unlinked(record, object)`: what a relation to a record with no copy in that
    /// object of this system is written as (nothing, unless a plan knows the copy a
    /// create will make).
    fn project_values<'v>(
        &self,
        m: &ObjectMapping,
        values: &dyn Fn(&str) -> Option<&'v Value>,
        unlinked: &dyn Fn(Uuid, &str) -> Option<String>,
    ) -> Result<(Projection, Hash), EngineError> {
        let mut failure = None;
        let mut resolve = |v: &Value, ref_object: &str| -> Option<String> {
            let r: Result<Option<String>, EngineError> = (|| {
                let target = match v {
                    Value::ExtRef {
                        connector,
                        object,
                        id,
                    } if connector == &m.connector && object == ref_object => {
                        return Ok(Some(id.clone()))
                    }
                    Value::ExtRef {
                        connector,
                        object,
                        id,
                    } => self.get_id(Table::Links, &codec::link_key(connector, object, id))?,
                    Value::Ref(id) => Some(*id),
                    _ => None,
                };
                let Some(target) = target else {
                    return Ok(None);
                };
                let rec = self.load(self.alive(target)?)?;
                Ok(rec.and_then(|r| {
                    r.link(&m.connector, ref_object)
                        .map(|l| l.external_id.clone())
                        .or_else(|| unlinked(r.id, ref_object))
                }))
            })();
            r.unwrap_or_else(|e| {
                failure = Some(e);
                None
            })
        };
        let proj = m.project(values, &mut resolve);
        if let Some(e) = failure {
            return Err(e);
        }
        let hash = projection_hash(&m.object, &proj);
        Ok((proj, hash))
    }

    /// Absorb every candidate into the oldest (UUIDv7 order = creation order).
    fn merge_records(
        &mut self,
        candidates: &BTreeSet<Uuid>,
        evidence: &str,
        report: &mut ApplyReport,
    ) -> Result<Option<Uuid>, EngineError> {
        let Some(&survivor_id) = candidates.first() else {
            return Ok(None);
        };
        let Some(mut s) = self.load(survivor_id)? else {
            return Ok(Some(survivor_id));
        };
        for &a_id in candidates.iter().skip(1) {
            let Some(mut a) = self.load(a_id)? else {
                continue;
            };
            if a.merged_into.is_some() || a.kind != s.kind {
                continue;
            }
            if let Some(why) = self.billing_conflict(&s, &a)? {
                report.vetoed += 1;
                tracing::info!(survivor = %survivor_id, other = %a_id, %why, "merge vetoed");
                continue;
            }
            let old_keys = self.indexed_keys(&s)?;
            let mut journaled = Vec::new();
            for (field, entry) in &a.fields {
                let rule = self.policies.rule(s.kind, field);
                let ts = entry.from.source_ts;
                match decide(rule, s.fields.get(field), entry) {
                    Decision::Same => {}
                    Decision::Refresh => {
                        let old = s.fields.insert(field.clone(), entry.clone());
                        journaled.push((field.clone(), old, entry.clone()));
                    }
                    Decision::Take(reason) => {
                        self.history(s.kind, survivor_id, field, entry, s.fields.get(field));
                        let old = s.fields.insert(field.clone(), entry.clone());
                        journaled.push((field.clone(), old.clone(), entry.clone()));
                        if let Some(old) = old.filter(|o| !o.value.is_empty()) {
                            let ev = AuditEvent::Overwritten {
                                field: field.clone(),
                                old,
                                new: entry.clone(),
                                reason: format!("merge: {reason}"),
                            };
                            self.audit(survivor_id, ts, ev)?;
                        }
                    }
                    Decision::Keep(reason) => {
                        if !entry.value.is_empty() {
                            let ev = AuditEvent::Rejected {
                                field: field.clone(),
                                value: entry.clone(),
                                reason: format!("merge: {reason}"),
                            };
                            self.audit(survivor_id, ts, ev)?;
                        }
                    }
                }
            }
            let mut links_added = Vec::new();
            for l in &a.links {
                if !s.links.iter().any(|x| {
                    x.connector == l.connector
                        && x.object == l.object
                        && x.external_id == l.external_id
                }) {
                    s.links.push(l.clone());
                    links_added.push(l.clone());
                }
                self.put(
                    Table::Links,
                    codec::link_key(&l.connector, &l.object, &l.external_id),
                    survivor_id.as_bytes().to_vec(),
                );
                let key = (l.connector.clone(), l.object.clone());
                let moved = self.sync_states(a_id)?.remove(&key);
                self.sync_dirty.insert(a_id);
                if let Some(st) = moved {
                    let survivor = self.sync_states(survivor_id)?;
                    match survivor.entry(key) {
                        std::collections::btree_map::Entry::Vacant(v) => {
                            v.insert(st);
                        }
                        // Both held a copy there: the absorbed one's keys still find it.
                        std::collections::btree_map::Entry::Occupied(mut o) => {
                            o.get_mut().keys.extend(st.keys);
                        }
                    }
                    self.sync_dirty.insert(survivor_id);
                }
            }
            s.links.sort();
            // The absorbed record's identity keys stay as aliases of the survivor.
            for (k, _) in identity_keys(a.kind, &|f| a.value(f)) {
                self.put(Table::Index, k, survivor_id.as_bytes().to_vec());
            }
            let referrers: Vec<Uuid> = self.referrers(a_id)?.into_iter().collect();
            self.repoint_referrers(a_id, survivor_id)?;
            self.journal(
                survivor_id,
                codec::MergeJournal {
                    at: self.now,
                    link: None,
                    absorbed: Some(a_id),
                    own: BTreeMap::new(),
                    changed: journaled,
                    links_added,
                    referrers,
                    evidence: evidence.to_owned(),
                },
            )?;
            for k in self.block_entries(&a).into_keys() {
                self.del(Table::Index, k);
            }
            a.merged_into = Some(survivor_id);
            a.version += 1;
            a.updated_ts = self.now;
            let ev = AuditEvent::Merged {
                survivor: survivor_id,
                absorbed: a_id,
                evidence: evidence.to_owned(),
            };
            self.audit(survivor_id, self.now, ev.clone())?;
            self.audit(a_id, self.now, ev)?;
            self.save(a);
            self.reindex(&s, &old_keys)?;
            report.merged += 1;
        }
        s.version += 1;
        s.updated_ts = self.now;
        // Records referring to either side may now name the survivor in systems where only
        // one side had a copy: their projections change.
        let links: Vec<(String, String, String)> = s
            .links
            .iter()
            .map(|l| (l.connector.clone(), l.object.clone(), l.external_id.clone()))
            .collect();
        self.save(s);
        let mut waiting = self.referrers(survivor_id)?;
        for (c, o, x) in links {
            waiting.extend(self.resolve_waiting(&c, &o, &x, survivor_id)?);
        }
        waiting.remove(&survivor_id);
        for r in waiting {
            report.enqueued += self.enqueue_projections(r)?;
        }
        Ok(Some(survivor_id))
    }

    fn repoint_referrers(&mut self, from: Uuid, to: Uuid) -> Result<(), EngineError> {
        for r in self.referrers(from)? {
            self.del(Table::Index, index::referrer(from, r));
            self.retarget(r, to, |v| *v == Value::Ref(from))?;
        }
        Ok(())
    }

    /// Point every relation of record `r` that `names` matches at `target`, and index `r`
    /// as its referrer.
    fn retarget(
        &mut self,
        r: Uuid,
        target: Uuid,
        names: impl Fn(&Value) -> bool,
    ) -> Result<(), EngineError> {
        let Some(mut rec) = self.load(r)? else {
            return Ok(());
        };
        let mut touched = false;
        for e in rec.fields.values_mut().filter(|e| names(&e.value)) {
            e.value = Value::Ref(target);
            touched = true;
        }
        if touched {
            rec.version += 1;
            self.put(Table::Index, index::referrer(target, r), Vec::new());
            self.save(rec);
        }
        Ok(())
    }

    fn delete(
        &mut self,
        mapping: &ObjectMapping,
        policy: DeletePolicy,
        change: &Change,
        linked: Option<Uuid>,
        report: &mut ApplyReport,
    ) -> Result<(), EngineError> {
        let (conn, obj, ext) = (
            mapping.connector.as_str(),
            mapping.object.as_str(),
            change.external_id.as_str(),
        );
        let ts = change.source_updated_at.timestamp_micros();
        if mapping.has_xrefs() {
            self.forget_xrefs(conn, obj, ext, BTreeSet::new())?;
        }
        let Some(id) = linked else {
            report.unchanged += 1;
            return Ok(());
        };
        let Some(mut rec) = self.load(id)? else {
            return Ok(());
        };
        let Some((pos, found)) = rec
            .links
            .iter()
            .enumerate()
            .find(|(_, l)| l.connector == conn && l.object == obj && l.external_id == ext)
        else {
            report.unchanged += 1;
            return Ok(());
        };
        if found.source_ts > ts {
            report.stale += 1;
            return Ok(());
        }
        let link = rec.links.remove(pos);
        self.del(Table::Links, codec::link_key(conn, obj, ext));
        self.put(
            Table::Index,
            index::tombstone(conn, obj, ext),
            codec::encode(&(id, ts)),
        );
        self.note_tombstones(conn, obj, true);
        if self
            .sync_states(id)?
            .remove(&(conn.to_owned(), obj.to_owned()))
            .is_some()
        {
            self.sync_dirty.insert(id);
        }
        let policy_name = policy.as_str();
        self.audit(
            id,
            ts,
            AuditEvent::LinkRemoved {
                link,
                policy: policy_name.into(),
            },
        )?;
        if policy != DeletePolicy::Ignore {
            rec.archived = true;
        }
        if policy == DeletePolicy::Propagate {
            for l in rec.links.clone() {
                let entry = OutboxEntry {
                    record: id,
                    object: l.object.clone(),
                    op: PushOp::Delete {
                        external_id: l.external_id.clone(),
                    },
                    hash: [0; 16],
                    enqueued_ts: self.now,
                    attempts: 0,
                    not_before: 0,
                };
                self.enqueue(&l.connector, entry);
                report.enqueued += 1;
            }
        }
        rec.version += 1;
        rec.updated_ts = self.now;
        self.save(rec);
        report.deleted += 1;
        Ok(())
    }

    pub fn confirm_push(
        &mut self,
        connector: &str,
        seqs: &[u64],
        record: Uuid,
        object: &str,
        hash: Hash,
        created_external_id: Option<&str>,
    ) -> Result<(), EngineError> {
        for seq in seqs {
            self.outbox_remove(connector, *seq);
        }
        let id = self.alive(record)?;
        let mut st = self.sync_get(id, connector, object)?;
        st.held = Some(hash);
        if st.queued == Some(hash) {
            st.queued = None;
        }
        // The system holds this one now: anything sent before it, read back later, is
        // an older state of the copy, not an echo of what it holds; nor is it the
        // system's own edit after this send (ADR 0051), so it is remembered as earlier.
        for h in st.sent.iter().filter(|h| **h != hash) {
            st.earlier.retain(|e| e != h);
            st.earlier.push(*h);
        }
        if st.earlier.len() > codec::MAX_SENT {
            let extra = st.earlier.len() - codec::MAX_SENT;
            st.earlier.drain(..extra);
        }
        st.sent.retain(|h| *h == hash);
        self.sync_set(id, connector, object, st)?;
        if let Some(ext) = created_external_id {
            if let Some(mut rec) = self.load(id)? {
                if rec
                    .link(connector, object)
                    .is_none_or(|l| l.external_id != ext)
                {
                    // Source time unknown (0): the system's own next report of it is never "stale".
                    rec.links.push(Link {
                        connector: connector.into(),
                        object: object.into(),
                        external_id: ext.into(),
                        source_ts: 0,
                    });
                    rec.links.sort();
                    rec.version += 1;
                    self.put(
                        Table::Links,
                        codec::link_key(connector, object, ext),
                        id.as_bytes().to_vec(),
                    );
                    self.save(rec);
                    // Records that refer to this one (a deal to its company) could not name
                    // it in this system until now: their projections there change.
                    let mut waiting = self.referrers(id)?;
                    waiting.extend(self.resolve_waiting(connector, object, ext, id)?);
                    waiting.remove(&id);
                    for r in waiting {
                        self.enqueue_projections(r)?;
                    }
                    self.merge_xref_waiting(
                        connector,
                        object,
                        ext,
                        id,
                        &mut ApplyReport::default(),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Records whose relation named the copy (connector, object, external id) before it
    /// was linked: the relation now names `target` itself, indexed as a referrer, so any
    /// link `target` gains later (a company created in HubSpot) reaches them too.
    fn resolve_waiting(
        &mut self,
        connector: &str,
        object: &str,
        external_id: &str,
        target: Uuid,
    ) -> Result<BTreeSet<Uuid>, EngineError> {
        // No relation names this object: nothing can wait (and no scan per new link).
        if !self.mappings.ref_target(connector, object) {
            return Ok(BTreeSet::new());
        }
        let waiting = self.ids_under(&index::waiting_for(connector, object, external_id))?;
        for &r in &waiting {
            self.del(
                Table::Index,
                index::waiting(connector, object, external_id, r),
            );
            if r != target {
                self.retarget(r, target, |v| {
                    matches!(v, Value::ExtRef { connector: c, object: o, id }
                        if c == connector && o == object && id == external_id)
                })?;
            }
        }
        Ok(waiting)
    }

    /// Records that carried a cross-system id naming the copy (connector, object,
    /// external id) before it was linked (a Stripe customer read before the HubSpot
    /// company its metadata names): now that `target` holds that copy, they are one
    /// customer and merge, exactly as if the copy had been linked when they were read.
    fn merge_xref_waiting(
        &mut self,
        connector: &str,
        object: &str,
        external_id: &str,
        target: Uuid,
        report: &mut ApplyReport,
    ) -> Result<(), EngineError> {
        // No xref names this object: nothing can wait (and no scan per new link).
        if !self.mappings.xref_target(connector, object) {
            return Ok(());
        }
        let waiting =
            self.entries_under(&index::xref_waiting_for(connector, object, external_id))?;
        if waiting.is_empty() {
            return Ok(());
        }
        let target = self.alive(target)?;
        let Some(kind) = self.load(target)?.map(|r| r.kind) else {
            return Ok(());
        };
        let mut candidates = BTreeSet::from([target]);
        let mut evidence = Vec::new();
        for (r, named_by) in waiting {
            self.del(
                Table::Index,
                index::xref_waiting(connector, object, external_id, r),
            );
            let r = self.alive(r)?;
            if r != target && self.load(r)?.is_some_and(|rec| rec.kind == kind) {
                candidates.insert(r);
                let named_by = String::from_utf8_lossy(&named_by).into_owned();
                evidence.push(format!(
                    "{named_by} names {connector}:{object}:{external_id}"
                ));
            }
        }
        if candidates.len() > 1 {
            if let Some(survivor) = self.merge_records(&candidates, &evidence.join("; "), report)? {
                report.enqueued += self.enqueue_projections(survivor)?;
            }
        }
        Ok(())
    }

    /// Note which ids the copy names now; drop the waiting entries it made for ids it no
    /// longer names (changed, cleared, or the copy deleted: `now` empty).
    fn forget_xrefs(
        &mut self,
        conn: &str,
        obj: &str,
        ext: &str,
        now: BTreeSet<(String, String, String)>,
    ) -> Result<(), EngineError> {
        let key = index::xref_named(conn, obj, ext);
        let before: BTreeSet<(String, String, String)> = match self.get(Table::Index, &key)? {
            Some(b) => codec::decode(&b).map_err(corrupt("xref names"))?,
            None => BTreeSet::new(),
        };
        if before == now {
            return Ok(());
        }
        let me = format!("{conn} {obj} {ext}");
        for (c, o, x) in before.difference(&now) {
            for (r, named_by) in self.entries_under(&index::xref_waiting_for(c, o, x))? {
                if named_by == me.as_bytes() {
                    self.del(Table::Index, index::xref_waiting(c, o, x, r));
                }
            }
        }
        if now.is_empty() {
            self.del(Table::Index, key);
        } else {
            self.put(Table::Index, key, codec::encode(&now));
        }
        Ok(())
    }

    fn referrers(&self, target: Uuid) -> Result<BTreeSet<Uuid>, EngineError> {
        self.ids_under(&index::referrers_of(target))
    }

    /// The ids that end the `Index` keys under `prefix`, stored or written in this batch.
    fn ids_under(&self, prefix: &[u8]) -> Result<BTreeSet<Uuid>, EngineError> {
        Ok(self.entries_under(prefix)?.into_keys().collect())
    }

    /// The `Index` entries under `prefix` as (id ending the key, value): stored ones, as
    /// this batch has changed them so far.
    fn entries_under(&self, prefix: &[u8]) -> Result<BTreeMap<Uuid, Vec<u8>>, EngineError> {
        // Every entry is needed (a merge repoints every referrer), but read in pages: no
        // one store call walks an unbounded range.
        let mut found: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .scan(Table::Index, prefix, after.as_deref(), super::SCAN_PAGE)?;
            let full = page.len() == super::SCAN_PAGE;
            after = page.last().map(|(k, _)| k.clone());
            found.extend(page);
            if !full {
                break;
            }
        }
        self.overlay_index(prefix, &mut found);
        found
            .into_iter()
            .map(|(k, v)| Ok((uuid_from(k.get(prefix.len()..).unwrap_or_default())?, v)))
            .collect()
    }

    /// Apply this batch's writes under `prefix` of `Index` to entries read from the store.
    fn overlay_index(&self, prefix: &[u8], found: &mut BTreeMap<Vec<u8>, Vec<u8>>) {
        let written = self.kv.get(&Table::Index).into_iter().flat_map(|t| {
            t.range::<[u8], _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
        });
        for (k, v) in written {
            match v {
                Some(v) => found.insert(k.clone(), v.clone()),
                None => found.remove(k),
            };
        }
    }

    /// Put an entry back in the outbox under a new sequence (dead-letter replay).
    pub fn requeue(&mut self, connector: &str, mut entry: OutboxEntry) {
        entry.attempts = 0;
        entry.not_before = 0;
        self.enqueue(connector, entry);
    }

    pub fn put_raw(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.put(table, key, value);
    }

    pub fn del_raw(&mut self, table: Table, key: Vec<u8>) {
        self.del(table, key);
    }

    pub fn finish(
        mut self,
        connector: &str,
        object: &str,
        cursor: Option<&str>,
    ) -> Result<(WriteBatch, u64, Moves), EngineError> {
        if let Some(c) = cursor {
            self.put(
                Table::Cursors,
                codec::cursor_key(connector, object),
                c.as_bytes().to_vec(),
            );
        }
        self.finish_without_cursor()
    }

    pub fn finish_without_cursor(mut self) -> Result<(WriteBatch, u64, Moves), EngineError> {
        let mut batch = WriteBatch::new();
        let mut ids = std::mem::take(&mut self.dirty);
        self.note_events(&ids)?;
        ids.append(&mut std::mem::take(&mut self.sync_dirty));
        for id in ids {
            // Sync states of a record that is not there: nothing to keep them with.
            let Some(rec) = self.record_ref(id)? else {
                continue;
            };
            let loaded;
            let states = match self.sync.get(&id) {
                Some(s) => s,
                None => {
                    loaded = self.stored_states(id)?;
                    &loaded
                }
            };
            let revenue = codec::keeps_history(rec.kind);
            batch.put(
                Table::Records,
                codec::record_key(id),
                codec::encode_record(&rec, states),
            );
            if self.legacy_sync.borrow().contains(&id) {
                batch.delete(Table::Pushed, codec::sync_key(id));
            }
            if revenue {
                self.moves.revenue.insert(id);
            }
        }
        self.finish_outbox(&mut batch)?;
        for (table, writes) in self.kv {
            for (key, value) in writes {
                if table == Table::DeadLetters {
                    // Rare writes: one read each tells a new letter from a rewrite.
                    let stored = self.store.get(table, &key)?.is_some();
                    let delta = i64::from(value.is_some()) - i64::from(stored);
                    self.moves
                        .dead_letters(&codec::split_seq_key(&key).0, delta);
                }
                match value {
                    Some(v) => batch.put(table, key, v),
                    None => batch.delete(table, key),
                }
            }
        }
        batch.put(
            Table::Meta,
            codec::META_OUTBOX_SEQ.to_vec(),
            self.seq.to_be_bytes().to_vec(),
        );
        Ok((batch, self.seq, self.moves))
    }
}

/// Set a record's field; the old entry back. The key is copied only for a field the
/// record did not have.
fn put_field(
    fields: &mut BTreeMap<String, FieldEntry>,
    field: &str,
    entry: FieldEntry,
) -> Option<FieldEntry> {
    match fields.get_mut(field) {
        Some(slot) => Some(std::mem::replace(slot, entry)),
        None => fields.insert(field.to_owned(), entry),
    }
}

/// Exact identity keys of a record: valid email for persons, non-free-mail domains for
/// organizations. Invalid emails never match: "n/a" must not merge strangers.
pub(super) fn identity_keys<'v>(
    kind: Kind,
    get: &dyn Fn(&str) -> Option<&'v Value>,
) -> Vec<(Vec<u8>, String)> {
    let mut keys = Vec::new();
    match kind {
        Kind::Person => {
            if let (Some(Value::Text(e)), valid) = (get("email"), get("email_valid")) {
                // A role address (info@, billing@) is a team's: it joins no two persons.
                if valid != Some(&Value::Bool(false)) && !normalize::is_role_address(e) {
                    keys.push((index::email(e), format!("email {e}")));
                }
            }
        }
        Kind::Organization => {
            let mut domains: Vec<&str> = Vec::new();
            if let Some(Value::Text(d)) = get("domain") {
                domains.push(d);
            }
            if let Some(Value::List(items)) = get("domains") {
                domains.extend(items.iter().filter_map(Value::as_text));
            }
            for d in domains {
                if !normalize::is_free_mail(d) {
                    keys.push((index::domain(d), format!("domain {d}")));
                }
            }
        }
        _ => {}
    }
    keys
}

/// What an operator's edit did to one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditOutcome {
    Written,
    /// The record already holds that value.
    Same,
    /// The field's merge rule keeps the current value, for this reason.
    Kept(&'static str),
}
