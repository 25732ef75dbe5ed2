//! Changes submitted by a consumer of the engine's events (workflows) rather than read
//! from a system, and the events themselves: what each write did to each record, kept
//! in the same batch as the write so a consumer sees every change exactly once.

use std::collections::{BTreeMap, BTreeSet};

use revsync_sdk::{FieldEntry, Kind, Provenance, Record, Value};
use uuid::Uuid;

use super::{identity_keys, Txn};
use crate::engine::codec::{self, index};
use crate::engine::EngineError;
use crate::store::Table;

/// One record's change in one write.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub record: Uuid,
    pub kind: Kind,
    /// When the write happened (microseconds, UTC).
    pub at: i64,
    /// The record did not exist before this write.
    pub created: bool,
    /// Fields whose value changed, in field order.
    pub changes: Vec<FieldChange>,
    /// How many consumer-submitted writes led to this one (0: a system's or an
    /// operator's change). A consumer bounds its chains with it.
    pub depth: u8,
    /// Read during the connector's first full read of the object (the system's past,
    /// not a change happening now).
    pub backfill: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FieldChange {
    pub field: String,
    /// `Null` when the record had no value.
    pub from: Value,
    pub to: Value,
    /// Where the new value came from (a connector, `console`, `workflow:<rule>`).
    pub by: String,
}

impl Event {
    /// The change of `field`, if this write changed it.
    pub fn change(&self, field: &str) -> Option<&FieldChange> {
        self.changes.iter().find(|c| c.field == field)
    }

    /// Every changed value came from `source`: the consumer's own write coming back.
    pub fn only_by(&self, source: &str) -> bool {
        !self.changes.is_empty() && self.changes.iter().all(|c| c.by == source)
    }
}

/// What a consumer asks of the engine. Values go through the same field rules as a
/// system's, with the act's source as their provenance, and are pushed like any change.
#[derive(Debug, Clone, PartialEq)]
pub enum Act {
    /// Set fields of an existing record.
    Set {
        record: Uuid,
        values: BTreeMap<String, Value>,
    },
    /// Create a record, or update the one its identity keys (email, domain) find.
    /// `route`: the only connectors that create it (`None`: every one whose mapping does).
    Create {
        kind: Kind,
        values: BTreeMap<String, Value>,
        route: Option<Vec<String>>,
    },
}

/// What an act did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "record")]
pub enum ActOutcome {
    Created(Uuid),
    /// Written to this record (a create that found its record by identity keys, too).
    Updated(Uuid),
    /// Nothing changed: the values were there, or the field rules kept the record's own.
    Unchanged(Uuid),
    /// The record named is not there (deleted or never existed).
    Missing(Uuid),
}

impl ActOutcome {
    pub fn record(&self) -> Uuid {
        match self {
            ActOutcome::Created(id)
            | ActOutcome::Updated(id)
            | ActOutcome::Unchanged(id)
            | ActOutcome::Missing(id) => *id,
        }
    }
}

impl Txn<'_> {
    /// Carry out one act with `source` as the provenance of what it writes.
    pub fn act(&mut self, act: &Act, source: &str) -> Result<ActOutcome, EngineError> {
        match act {
            Act::Set { record, values } => {
                let id = self.alive(*record)?;
                if self.load(id)?.is_none_or(|r| r.archived) {
                    return Ok(ActOutcome::Missing(*record));
                }
                self.set_values(id, values, source)
            }
            Act::Create {
                kind,
                values,
                route,
            } => {
                let found = identity_keys(*kind, &|f| values.get(f))
                    .into_iter()
                    .map(|(k, _)| self.get_id(Table::Index, &k))
                    .find_map(Result::transpose)
                    .transpose()?;
                if let Some(id) = found {
                    let id = self.alive(id)?;
                    if self.with_record(id, |r| r.kind == *kind)? == Some(true) {
                        return self.set_values(id, values, source);
                    }
                }
                self.create(*kind, values, route.as_deref(), source)
            }
        }
    }

    /// Values set through the field rules an operator's edit goes through.
    fn set_values(
        &mut self,
        id: Uuid,
        values: &BTreeMap<String, Value>,
        source: &str,
    ) -> Result<ActOutcome, EngineError> {
        Ok(match self.apply_edit(id, values, source)? {
            None => ActOutcome::Missing(id),
            Some(o) if o.contains(&super::EditOutcome::Written) => ActOutcome::Updated(id),
            Some(_) => ActOutcome::Unchanged(id),
        })
    }

    fn create(
        &mut self,
        kind: Kind,
        values: &BTreeMap<String, Value>,
        route: Option<&[String]>,
        source: &str,
    ) -> Result<ActOutcome, EngineError> {
        let mut rec = Record::new(Uuid::now_v7(), kind, self.now);
        let id = rec.id;
        let old_keys = self.indexed_keys(&rec)?;
        let at = self.provenance(source);
        for (field, value) in values.iter().filter(|(_, v)| !v.is_empty()) {
            let entry = FieldEntry {
                value: value.clone(),
                from: at.clone(),
            };
            self.history(kind, id, field, &entry, None);
            rec.fields.insert(field.clone(), entry);
        }
        rec.version = 1;
        self.fresh.insert(id);
        if let Some(route) = route {
            self.put(Table::Index, index::route(id), codec::encode(&route));
            if !self.routes {
                self.put(Table::Meta, codec::META_ROUTES.to_vec(), Vec::new());
                self.routes = true;
                self.moves.routes = true;
            }
        }
        self.reindex(&rec, &old_keys)?;
        self.save(rec);
        self.enqueue_projections(id)?;
        Ok(ActOutcome::Created(id))
    }

    fn provenance(&self, source: &str) -> Provenance {
        Provenance {
            connector: source.to_owned(),
            source_ts: self.now,
            observed_ts: self.now,
        }
    }

    /// Whether a record with no copy in `connector` may be created there: a record made
    /// with a route goes only where the route says.
    pub(super) fn routed_to(&self, id: Uuid, connector: &str) -> Result<bool, EngineError> {
        if !self.routes {
            return Ok(true);
        }
        let Some(bytes) = self.get(Table::Index, &index::route(id))? else {
            return Ok(true);
        };
        let route: Vec<String> = codec::decode(&bytes).map_err(super::corrupt("index"))?;
        Ok(route.iter().any(|c| c == connector))
    }

    /// The events of this write, one per record it changed, into the batch's overlay:
    /// called at the end, when every record holds its final state.
    pub(super) fn note_events(&mut self, ids: &BTreeSet<Uuid>) -> Result<(), EngineError> {
        let Some((depth, backfill)) = self.events else {
            return Ok(());
        };
        for &id in ids {
            let Some(after) = self.records.get(&id) else {
                continue;
            };
            if after.merged_into.is_some() || after.archived {
                continue;
            }
            let stored = if self.fresh.contains(&id) {
                None
            } else {
                let cached = self.clean.borrow().get(&id).cloned();
                match cached {
                    Some(r) => Some(r),
                    None => super::super::read_record_and_sync(self.store, id)?.map(|s| s.record),
                }
            };
            let Some(mut event) = diff(stored.as_ref(), after, self.now, depth) else {
                continue;
            };
            // A record a rule made is no system's past: what a first read says of it (the
            // subscription a rule created turning active) carries that rule's chain on.
            event.backfill = backfill && !stored.as_ref().is_some_and(made_by_rule);
            self.seq += 1;
            let key = self.seq.to_be_bytes().to_vec();
            self.put(Table::Events, key, codec::encode(&event));
            self.moves.events = true;
        }
        Ok(())
    }
}

/// How the provenance of a workflow rule's writes begins (`workflow:<rule>`).
pub const WORKFLOW_PREFIX: &str = "workflow:";

/// Whether a workflow rule made the record (a field still has the rule's provenance).
fn made_by_rule(r: &Record) -> bool {
    r.fields
        .values()
        .any(|f| f.from.connector.starts_with(WORKFLOW_PREFIX))
}

/// What a write did to one record; `None` when no value changed.
pub fn diff(before: Option<&Record>, after: &Record, at: i64, depth: u8) -> Option<Event> {
    let created = before.is_none_or(|b| b.merged_into.is_some());
    let empty = BTreeMap::new();
    let old = before.map_or(&empty, |b| &b.fields);
    let mut changes = Vec::new();
    for (field, entry) in &after.fields {
        let from = old.get(field).map(|e| &e.value);
        if from == Some(&entry.value) || (from.is_none() && entry.value.is_empty()) {
            continue;
        }
        changes.push(FieldChange {
            field: field.clone(),
            from: from.cloned().unwrap_or(Value::Null),
            to: entry.value.clone(),
            by: entry.from.connector.clone(),
        });
    }
    for (field, entry) in old {
        if !after.fields.contains_key(field) && !entry.value.is_empty() {
            changes.push(FieldChange {
                field: field.clone(),
                from: entry.value.clone(),
                to: Value::Null,
                by: String::new(),
            });
        }
    }
    if changes.is_empty() && !created {
        return None;
    }
    Some(Event {
        record: after.id,
        kind: after.kind,
        at,
        created,
        changes,
        depth,
        backfill: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(v: &str, by: &str) -> FieldEntry {
        FieldEntry {
            value: Value::Text(v.into()),
            from: Provenance {
                connector: by.into(),
                source_ts: 1,
                observed_ts: 1,
            },
        }
    }

    #[test]
    fn diff_names_each_changed_value_with_its_source() {
        let mut before = Record::new(Uuid::now_v7(), Kind::Deal, 1);
        before
            .fields
            .insert("status".into(), entry("open", "hubspot"));
        before.fields.insert("name".into(), entry("Big", "hubspot"));
        let mut after = before.clone();
        after
            .fields
            .insert("status".into(), entry("won", "salesforce"));
        // A newer assertion of the same value is no change.
        after
            .fields
            .insert("name".into(), entry("Big", "salesforce"));
        let e = diff(Some(&before), &after, 5, 0).unwrap();
        assert!(!e.created);
        assert_eq!(e.changes.len(), 1);
        let c = e.change("status").unwrap();
        assert_eq!(
            (c.from.clone(), c.to.clone(), c.by.as_str()),
            (
                Value::Text("open".into()),
                Value::Text("won".into()),
                "salesforce"
            )
        );
        assert!(diff(Some(&before), &before, 5, 0).is_none());
        let created = diff(None, &after, 5, 2).unwrap();
        assert!(created.created && created.depth == 2 && created.changes.len() == 2);
        assert!(created.only_by("salesforce") && !created.only_by("hubspot"));
    }
}
