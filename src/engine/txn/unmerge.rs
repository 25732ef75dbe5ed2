//! Merge journals and `records unmerge`: each merge keeps what it changed in the record
//! that survived it, so an operator can split a wrongly joined copy or record off again.

use std::collections::{BTreeMap, BTreeSet};

use revsync_sdk::{Link, Record, Value};
use uuid::Uuid;

use super::super::codec::{self, index, AuditEvent, MergeJournal};
use super::{corrupt, EngineError, Indexed, Txn};
use crate::store::Table;

/// Journals read per record: far more merges than any one customer sees.
const MAX_JOURNALS: usize = 1_000;

/// What an unmerge did, or why it could not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmerged {
    /// `split` is a record of its own again; `link` is the copy it took, for a join.
    Done {
        survivor: Uuid,
        split: Uuid,
        link: Option<Link>,
    },
    /// Nothing to undo, with the reason an operator reads.
    Refused(String),
}

/// Which merge of a record to undo.
enum Pick<'s> {
    /// The newest.
    Latest,
    /// The one that brought this copy (a join, or the record merge that moved it).
    Copy(&'s str, &'s str, &'s str),
    /// The one that absorbed this record.
    Absorbed(Uuid),
}

impl Txn<'_> {
    /// Keep what a merge did to `record`, ordered by the write's time; a key already taken (a second merge into the record in
    /// this write, or a clock set back) moves to the next free one.
    pub(super) fn journal(&mut self, record: Uuid, j: MergeJournal) -> Result<(), EngineError> {
        let mut seq = u64::try_from(self.now)
            .unwrap_or_default()
            .saturating_mul(1024);
        while self
            .get(Table::Index, &index::journal(record, seq))?
            .is_some()
        {
            seq = seq.saturating_add(1);
        }
        self.put(Table::Index, index::journal(record, seq), codec::encode(&j));
        Ok(())
    }

    /// A record's merge journals, oldest first, as this write has changed them.
    fn journals(&self, record: Uuid) -> Result<Vec<(Vec<u8>, MergeJournal)>, EngineError> {
        let prefix = index::journal_of(record);
        let mut found: BTreeMap<Vec<u8>, Vec<u8>> = self
            .store
            .scan(Table::Index, &prefix, None, MAX_JOURNALS)?
            .into_iter()
            .collect();
        self.overlay_index(&prefix, &mut found);
        found
            .into_iter()
            .map(|(k, v)| Ok((k, codec::decode(&v).map_err(corrupt("index"))?)))
            .collect()
    }

    /// Two records an operator split (or rejected as a pair) are never one again: of
    /// exact candidates for one copy, those paired with its own record (or, for a new
    /// copy, with the oldest candidate) by a "never" entry are dropped.
    pub(super) fn drop_never_pairs(
        &self,
        candidates: &mut BTreeSet<Uuid>,
        linked: Option<Uuid>,
    ) -> Result<(), EngineError> {
        let Some(anchor) = linked.or_else(|| candidates.first().copied()) else {
            return Ok(());
        };
        let mut keep = BTreeSet::new();
        for &c in candidates.iter() {
            if c == anchor || self.get(Table::Index, &index::never(anchor, c))?.is_none() {
                keep.insert(c);
            }
        }
        *candidates = keep;
        Ok(())
    }

    /// An operator's merge of two records (the older id survives), through the path any
    /// other merge takes, so it is journaled and can be undone. `None`: one is missing or
    /// they are of different kinds.
    pub(in crate::engine) fn merge_pair(
        &mut self,
        a: Uuid,
        b: Uuid,
        by: &str,
    ) -> Result<Option<Uuid>, EngineError> {
        let (a, b) = (self.alive(a)?, self.alive(b)?);
        let kinds = (
            self.with_record(a, |r| r.kind)?,
            self.with_record(b, |r| r.kind)?,
        );
        match kinds {
            (Some(ka), Some(kb)) if ka == kb => {}
            _ => return Ok(None),
        }
        if a == b {
            return Ok(Some(a));
        }
        if let (Some(ra), Some(rb)) = (self.load(a)?, self.load(b)?) {
            if let Some(why) = self.billing_conflict(&ra, &rb)? {
                return Err(EngineError::Refused(format!("not merged: {why}")));
            }
        }
        self.del(Table::Index, index::never(a, b));
        let mut report = super::super::ApplyReport::default();
        let survivor = self.merge_records(
            &[a, b].into_iter().collect(),
            &format!("merged by {by}"),
            &mut report,
        )?;
        if let Some(s) = survivor {
            self.enqueue_projections(s)?;
        }
        Ok(survivor)
    }

    /// Undo one merge of record `id` (or the merge that absorbed `id`, a tombstone): the
    /// fields the merge set and nobody changed since go back to what they were, the copy
    /// or absorbed record becomes a record of its own again with its links, sync states
    /// and relations, both are re-indexed and projected to every system, and the pair is
    /// remembered as never to be merged again.
    pub(in crate::engine) fn unmerge(
        &mut self,
        id: Uuid,
        source: Option<(&str, &str, &str)>,
        by: &str,
    ) -> Result<Unmerged, EngineError> {
        let Some(target) = self.load(id)? else {
            return Ok(Unmerged::Refused(format!("no record {id}")));
        };
        let (survivor, pick) = match (target.merged_into, source) {
            (Some(_), _) => (self.alive(id)?, Pick::Absorbed(id)),
            (None, Some((c, o, x))) => (id, Pick::Copy(c, o, x)),
            (None, None) => (id, Pick::Latest),
        };
        let same = |l: &Link, c: &str, o: &str, x: &str| {
            l.connector == c && l.object == o && l.external_id == x
        };
        let Some(mut s) = self.load(survivor)? else {
            return Ok(Unmerged::Refused(format!("no record {survivor}")));
        };
        // A join whose copy the record no longer holds (deleted at its source) has
        // nothing left to split off.
        let journals: Vec<(Vec<u8>, MergeJournal)> = self
            .journals(survivor)?
            .into_iter()
            .filter(|(_, j)| {
                j.link.as_ref().is_none_or(|l| {
                    s.links
                        .iter()
                        .any(|x| same(x, &l.connector, &l.object, &l.external_id))
                })
            })
            .collect();
        let found = match pick {
            Pick::Latest => journals.into_iter().next_back(),
            Pick::Copy(c, o, x) => journals.into_iter().rev().find(|(_, j)| {
                j.link.as_ref().is_some_and(|l| same(l, c, o, x))
                    || j.links_added.iter().any(|l| same(l, c, o, x))
            }),
            Pick::Absorbed(a) => journals
                .into_iter()
                .rev()
                .find(|(_, j)| j.absorbed == Some(a)),
        };
        let Some((key, j)) = found else {
            return Ok(Unmerged::Refused(match (pick, source) {
                (Pick::Copy(..), Some((c, o, x))) => format!(
                    "no merge of {c}:{o}:{x} into {survivor} is on record (it made the record, joined it before revsync kept merge journals, or is no longer a copy of it)"
                ),
                _ => format!("no merge into {survivor} is on record"),
            }));
        };
        let old_s = self.indexed_keys(&s)?;

        // Fields the merge set and nobody has changed since go back.
        for (field, before, after) in &j.changed {
            if s.fields.get(field) != Some(after) {
                continue;
            }
            match before {
                Some(b) => {
                    self.history(s.kind, survivor, field, b, s.fields.get(field));
                    s.fields.insert(field.clone(), b.clone());
                }
                None => {
                    s.fields.remove(field);
                }
            }
        }

        // The side that goes: the joined copy as it reported itself, or the absorbed
        // record as it was kept.
        let (mut split, moved): (Record, Vec<Link>) = match (&j.link, j.absorbed) {
            (Some(link), _) => {
                let current = s
                    .links
                    .iter()
                    .find(|l| same(l, &link.connector, &link.object, &link.external_id))
                    .cloned()
                    .unwrap_or_else(|| link.clone());
                let mut rec = Record::new(Uuid::now_v7(), s.kind, self.now);
                rec.fields = j.own.clone();
                // What the copy reported since the join and won is newer than its journal:
                // it goes with the copy, or the split would push an older value back over
                // an edit made in that system. (Only when it is the record's one copy in
                // that system: with two, a value's source does not say which.)
                let sole = s
                    .links
                    .iter()
                    .filter(|l| l.connector == link.connector)
                    .count()
                    == 1;
                for (f, e) in s
                    .fields
                    .iter()
                    .filter(|(_, e)| sole && e.from.connector == link.connector)
                {
                    if rec
                        .fields
                        .get(f)
                        .is_none_or(|o| o.from.source_ts < e.from.source_ts)
                    {
                        rec.fields.insert(f.clone(), e.clone());
                    }
                }
                rec.links = vec![current.clone()];
                self.fresh.insert(rec.id);
                (rec, vec![current])
            }
            (None, Some(a)) => {
                let Some(mut rec) = self.load(a)? else {
                    return Ok(Unmerged::Refused(format!(
                        "the absorbed record {a} is gone"
                    )));
                };
                rec.merged_into = None;
                let moved: Vec<Link> = j
                    .links_added
                    .iter()
                    .map(|l| {
                        s.links
                            .iter()
                            .find(|x| same(x, &l.connector, &l.object, &l.external_id))
                            .cloned()
                            .unwrap_or_else(|| l.clone())
                    })
                    .collect();
                rec.links = moved.clone();
                (rec, moved)
            }
            (None, None) => {
                return Ok(Unmerged::Refused("an empty merge journal".into()));
            }
        };
        s.links.retain(|l| {
            !moved
                .iter()
                .any(|m| same(l, &m.connector, &m.object, &m.external_id))
        });

        // Each moved copy takes its link, and its sync state (or, beside another copy
        // of the survivor in the same object, its own identity keys).
        for l in &moved {
            self.put(
                Table::Links,
                codec::link_key(&l.connector, &l.object, &l.external_id),
                split.id.as_bytes().to_vec(),
            );
            let key = (l.connector.clone(), l.object.clone());
            let shared = s
                .links
                .iter()
                .any(|x| x.connector == l.connector && x.object == l.object);
            let states = self.sync_states(survivor)?;
            let mut st = if shared {
                let keys = states
                    .get_mut(&key)
                    .and_then(|st| st.keys.remove(&l.external_id));
                let mut st = codec::SyncState::default();
                if let Some(k) = keys {
                    st.keys.insert(l.external_id.clone(), k);
                }
                st
            } else {
                states.remove(&key).unwrap_or_default()
            };
            self.sync_dirty.insert(survivor);
            let mut theirs = self.sync_get(split.id, &l.connector, &l.object)?;
            theirs.keys.append(&mut st.keys);
            st.keys = theirs.keys;
            self.sync_set(split.id, &l.connector, &l.object, st)?;
        }

        // Relations that named the absorbed record name it again.
        for r in &j.referrers {
            self.retarget(*r, split.id, |v| *v == Value::Ref(survivor))?;
        }

        let nothing = Indexed {
            keys: BTreeSet::new(),
            refs: BTreeSet::new(),
            blocks: BTreeMap::new(),
        };
        self.reindex(&split, &nothing)?;
        self.reindex(&s, &old_s)?;
        self.put(
            Table::Index,
            index::never(survivor, split.id),
            self.now.to_be_bytes().to_vec(),
        );
        self.del(Table::Index, key);
        let event = AuditEvent::Unmerged {
            survivor,
            split: split.id,
            link: j.link.clone(),
            by: by.to_owned(),
        };
        self.audit(survivor, self.now, event.clone())?;
        self.audit(split.id, self.now, event)?;
        for rec in [&mut s, &mut split] {
            rec.version += 1;
            rec.updated_ts = self.now;
        }
        let split_id = split.id;
        self.save(s);
        self.save(split);
        self.enqueue_projections(survivor)?;
        self.enqueue_projections(split_id)?;
        Ok(Unmerged::Done {
            survivor,
            split: split_id,
            link: j.link,
        })
    }
}
