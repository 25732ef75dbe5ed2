//! `revsync plan`: a dry run. Reads every configured system (or a sample of each object),
//! reconciles into a scratch in-memory store, and reports what a first sync would do: the
//! records it would create and update in each system (field by field, before and after),
//! the identities it would merge (with the evidence) and the conflicts it would resolve.
//! Nothing is written to any system, and the daemon's store is not touched.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use revsync_sdk::{Connector, Record, Value};
use serde::Serialize;
use serde_json::Value as Json;
use uuid::Uuid;

use crate::config::{Config, Direction};
use crate::engine::codec::{AuditEntry, AuditEvent, PushOp};
use crate::engine::{Engine, Page};
use crate::registry::Registry;
use crate::store::{MemStore, Store, Table};

/// Pages read per object at most when no `--limit` is given: a guard against a cursor
/// that never ends, far above any real backfill's page count.
const MAX_PAGES: usize = 1_000_000;

/// What a first sync would do.
#[derive(Debug, Default, Serialize)]
pub struct Plan {
    /// Records read, per connector and object.
    pub read: BTreeMap<String, BTreeMap<String, u64>>,
    /// Canonical records the reads reconcile into.
    pub canonical: u64,
    /// Per connector: what would be written there.
    pub systems: BTreeMap<String, SystemPlan>,
    pub merges: Vec<Merge>,
    pub conflicts: Vec<Conflict>,
    /// Objects whose read stopped at `--limit`: the plan covers a sample of them.
    pub sampled: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct SystemPlan {
    pub creates: Vec<Write>,
    pub updates: Vec<Write>,
}

/// One record written to one system.
#[derive(Debug, Serialize)]
pub struct Write {
    pub object: String,
    pub record: Uuid,
    /// The record's email, domain or name.
    pub label: String,
    /// The copy an update writes to; none for a create.
    pub external_id: Option<String>,
    pub fields: Vec<FieldChange>,
}

#[derive(Debug, Serialize)]
pub struct FieldChange {
    /// The system's own field name.
    pub field: String,
    /// What the copy holds now (none for a create, or a field it does not have).
    pub before: Option<Json>,
    pub after: Json,
}

/// Copies in several systems (or several in one) found to be one record.
#[derive(Debug, Serialize)]
pub struct Merge {
    pub record: Uuid,
    pub label: String,
    pub evidence: String,
    /// Every copy of the merged record, `connector:object:id`.
    pub copies: Vec<String>,
}

/// Systems that disagree on a field: which value wins, and why.
#[derive(Debug, Serialize)]
pub struct Conflict {
    pub record: Uuid,
    pub label: String,
    pub field: String,
    pub kept: Json,
    pub kept_from: String,
    pub lost: Json,
    pub lost_from: String,
    pub reason: String,
}

/// Every copy as read, to say what an update changes: (connector, object, id) -> fields.
type Copies = BTreeMap<(String, String, String), BTreeMap<String, Json>>;

/// Read everything (each object up to `limit` records) and reconcile it in memory.
pub async fn plan(
    config: &Config,
    registry: &Registry,
    limit: Option<usize>,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Plan> {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let (mappings, policies) = Engine::validate(config)
        .map_err(|e| anyhow::anyhow!("{}", crate::config::ConfigErrors(e)))?;
    let engine = Engine::new(
        store.clone(),
        config,
        mappings,
        policies,
        crate::engine::system_clock(),
    )?;
    let mut plan = Plan::default();
    let mut copies = Copies::new();
    for (_, c) in config.connectors.iter().filter(|(_, c)| c.enabled) {
        let connector: Arc<dyn Connector> =
            match crate::sync::build_connector(registry, c, revsync_sdk::Shutdown::default()) {
                Some(Ok(conn)) => conn,
                Some(Err(e)) => anyhow::bail!("connector `{}` cannot start: {e}", c.id),
                None => continue,
            };
        for (object, _) in c
            .objects
            .iter()
            .filter(|(_, o)| o.direction != Direction::Out)
        {
            let mut cursor: Option<String> = None;
            let mut n: u64 = 0;
            for _ in 0..MAX_PAGES {
                let mut fetched = connector
                    .fetch(object, cursor.as_deref())
                    .await
                    .map_err(|e| anyhow::anyhow!("reading {} {object}: {e}", c.id))?;
                // A page holds what the API chose: the sample stops at the limit itself,
                // not at the end of the page that crosses it.
                let room = limit.map(|l| (l as u64).saturating_sub(n));
                let cut = room.is_some_and(|r| fetched.changes.len() as u64 > r);
                if let Some(r) = room {
                    fetched
                        .changes
                        .truncate(usize::try_from(r).unwrap_or(usize::MAX));
                }
                n = n.saturating_add(fetched.changes.len() as u64);
                for ch in &fetched.changes {
                    copies.insert(
                        (c.id.clone(), object.clone(), ch.external_id.clone()),
                        ch.fields.clone(),
                    );
                }
                let page = Page {
                    object: object.clone(),
                    changes: fetched.changes,
                    cursor: fetched.cursor.clone(),
                };
                engine.apply(&c.id, page)?;
                progress(&format!("{} {object}: {n} records read", c.id));
                cursor = fetched.cursor;
                let reached = limit.is_some_and(|l| n >= l as u64);
                if reached && (cut || fetched.more) {
                    plan.sampled.push(format!("{}/{object}", c.id));
                }
                if reached || !fetched.more {
                    break;
                }
            }
            plan.read
                .entry(c.id.clone())
                .or_default()
                .insert(object.clone(), n);
        }
    }

    let alive = alive_records(store.as_ref())?;
    for (_, c) in config.connectors.iter().filter(|(_, c)| c.enabled) {
        let system = writes(&engine, &c.id, &alive, &copies)?;
        plan.systems.insert(c.id.clone(), system);
    }

    // Merges and conflicts, from the audit trail the reconciliation left.
    for rec in &alive {
        plan.canonical = plan.canonical.saturating_add(1);
        let trail = engine.audit(rec.id, usize::MAX)?;
        note_audit(&mut plan, rec, &trail);
        if rec.links.len() > 1 {
            plan.merges.push(joined(rec, &trail));
        }
    }
    Ok(plan)
}

/// Every record not merged into another.
fn alive_records(store: &dyn Store) -> anyhow::Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan(Table::Records, b"", after.as_deref(), 1024)?;
        let Some((last, _)) = page.last() else {
            return Ok(out);
        };
        after = Some(last.clone());
        for (_, value) in &page {
            let rec = crate::engine::codec::decode_record(value)
                .map_err(|e| anyhow::anyhow!("scratch store: {e}"))?;
            if rec.merged_into.is_none() {
                out.push(rec);
            }
        }
    }
}

/// What the sync would write to `connector`: the records its outbox holds, and every copy
/// there whose relation names a record this sync creates there (a contact whose company is
/// created in the same run is updated to point at it once it exists, though nothing about
/// the contact itself was queued).
fn writes(
    engine: &Engine,
    connector: &str,
    alive: &[Record],
    copies: &Copies,
) -> anyhow::Result<SystemPlan> {
    let mut system = SystemPlan::default();
    // Each record queued for an object once, as the dispatcher finds it (following
    // merges to the survivor), then every other copy held there.
    let mut candidates: Vec<(Record, String)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (_, entry) in engine.outbox(connector, usize::MAX)? {
        if !matches!(entry.op, PushOp::Upsert) {
            continue;
        }
        let Some(rec) = engine.find(&entry.record.to_string())? else {
            continue;
        };
        if seen.insert((rec.id, entry.object.clone())) {
            candidates.push((rec, entry.object));
        }
    }
    let queued = candidates.len();
    for rec in alive {
        for l in rec.links.iter().filter(|l| l.connector == connector) {
            if seen.insert((rec.id, l.object.clone())) {
                candidates.push((rec.clone(), l.object.clone()));
            }
        }
    }
    let mut created: BTreeMap<(Uuid, String), String> = BTreeMap::new();
    for (rec, object) in candidates.iter().take(queued) {
        if rec.link(connector, object).is_none()
            && engine.projection(connector, object, rec)?.is_some()
        {
            created.insert((rec.id, object.clone()), label(rec));
        }
    }
    let new_copy = |record: Uuid, object: &str| {
        created
            .get(&(record, object.to_owned()))
            .map(|l| format!("(the {object} record this sync creates: {l})"))
    };
    for (rec, object) in &candidates {
        let Some(after) = engine.planned_projection(connector, object, rec, &new_copy)? else {
            continue;
        };
        let link = rec.link(connector, object).map(|l| l.external_id.clone());
        let raw = link
            .as_ref()
            .and_then(|id| copies.get(&(connector.to_owned(), object.clone(), id.clone())));
        let before = match raw {
            Some(raw) => engine.copy_projection(connector, object, raw)?,
            None => None,
        };
        // The copy is updated when a value differs once both are normalized (as the
        // daemon compares them); the update then writes every field, so a value held in
        // another form (a phone as typed, an email in capitals) changes too.
        let differs = |field: &String, value: &Json| {
            before.as_ref().and_then(|b| b.get(field)) != Some(value)
        };
        if link.is_some() && !after.iter().any(|(f, v)| differs(f, v)) {
            continue;
        }
        let fields: Vec<FieldChange> = after
            .into_iter()
            .filter_map(|(field, value)| {
                let held = raw.and_then(|r| r.get(&field)).filter(|v| !v.is_null());
                (differs(&field, &value) || (link.is_some() && !same_text(held, &value))).then(
                    || FieldChange {
                        before: held.cloned(),
                        field,
                        after: value,
                    },
                )
            })
            .collect();
        let write = Write {
            object: object.clone(),
            record: rec.id,
            label: label(rec),
            external_id: link.clone(),
            fields,
        };
        if link.is_some() {
            system.updates.push(write);
        } else {
            system.creates.push(write);
        }
    }
    Ok(system)
}

/// A record several copies became, and what tied them: the evidence of the merges that
/// joined records, else the key the copies share.
fn joined(rec: &Record, trail: &[AuditEntry]) -> Merge {
    let mut evidence: Vec<String> = trail
        .iter()
        .filter_map(|e| match &e.event {
            AuditEvent::Merged {
                survivor, evidence, ..
            } if *survivor == rec.id => Some(evidence.clone()),
            _ => None,
        })
        .collect();
    if evidence.is_empty() {
        let key = ["email", "domain"].iter().find_map(|f| {
            rec.value(f)
                .and_then(Value::as_text)
                .map(|v| format!("same {f} {v}"))
        });
        evidence.push(key.unwrap_or_else(|| "ids that name each other".into()));
    }
    Merge {
        record: rec.id,
        label: label(rec),
        evidence: evidence.join("; "),
        copies: rec
            .links
            .iter()
            .map(|l| format!("{}:{}:{}", l.connector, l.object, l.external_id))
            .collect(),
    }
}

fn note_audit(plan: &mut Plan, rec: &Record, trail: &[AuditEntry]) {
    for e in trail {
        match &e.event {
            AuditEvent::Overwritten {
                field,
                old,
                new,
                reason,
            } => plan.conflicts.push(Conflict {
                record: rec.id,
                label: label(rec),
                field: field.clone(),
                kept: value_json(&new.value),
                kept_from: new.from.connector.clone(),
                lost: value_json(&old.value),
                lost_from: old.from.connector.clone(),
                reason: reason.clone(),
            }),
            AuditEvent::Rejected {
                field,
                value,
                reason,
            } => {
                let kept = rec.fields.get(field);
                plan.conflicts.push(Conflict {
                    record: rec.id,
                    label: label(rec),
                    field: field.clone(),
                    kept: kept.map(|k| value_json(&k.value)).unwrap_or(Json::Null),
                    kept_from: kept.map(|k| k.from.connector.clone()).unwrap_or_default(),
                    lost: value_json(&value.value),
                    lost_from: value.from.connector.clone(),
                    reason: reason.clone(),
                });
            }
            _ => {}
        }
    }
}

/// Whether a system holds `value` as it is written: the same text, or the same number
/// (`1000` and `1000.0`).
fn same_text(held: Option<&Json>, value: &Json) -> bool {
    let text = |v: &Json| match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    let Some(held) = held else {
        return false;
    };
    let (a, b) = (text(held), text(value));
    a == b || matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if x == y)
}

fn value_json(v: &Value) -> Json {
    serde_json::to_value(v).unwrap_or(Json::Null)
}

/// How a person reads a record: its email, domain, name or subject, else its id.
fn label(rec: &Record) -> String {
    crate::engine::view::label(rec).unwrap_or_else(|| rec.id.to_string())
}

impl Plan {
    /// The plan as a person reads it: a summary per system, then the writes, merges and
    /// conflicts, each list cut at `show` lines (the JSON and CSV carry them all).
    pub fn table(&self, show: usize) -> String {
        let mut out = String::new();
        let line = |out: &mut String, s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        let read: u64 = self.read.values().flat_map(|o| o.values()).sum();
        line(
            &mut out,
            format!(
                "read {read} records; they are {} canonical records ({} joined from several copies, {} conflicts resolved)",
                self.canonical,
                self.merges.len(),
                self.conflicts.len()
            ),
        );
        if !self.sampled.is_empty() {
            line(
                &mut out,
                format!("sampled (stopped at --limit): {}", self.sampled.join(", ")),
            );
        }
        line(&mut out, String::new());
        line(
            &mut out,
            format!(
                "{:24} {:>10} {:>8} {:>8}",
                "SYSTEM", "READ", "CREATE", "UPDATE"
            ),
        );
        for (id, s) in &self.systems {
            let read: u64 = self.read.get(id).map(|o| o.values().sum()).unwrap_or(0);
            line(
                &mut out,
                format!(
                    "{id:24} {read:>10} {:>8} {:>8}",
                    s.creates.len(),
                    s.updates.len()
                ),
            );
        }
        for (id, s) in &self.systems {
            for (what, writes) in [("create", &s.creates), ("update", &s.updates)] {
                if writes.is_empty() {
                    continue;
                }
                line(&mut out, format!("\n{id}: {} to {what}", writes.len()));
                for w in writes.iter().take(show) {
                    let target = w
                        .external_id
                        .as_deref()
                        .map(|x| format!(" {x}"))
                        .unwrap_or_default();
                    line(&mut out, format!("  {} {}{target}", w.object, w.label));
                    for f in &w.fields {
                        let before = f
                            .before
                            .as_ref()
                            .map(|b| format!("{b} -> "))
                            .unwrap_or_default();
                        line(&mut out, format!("      {}: {before}{}", f.field, f.after));
                    }
                }
                if writes.len() > show {
                    line(&mut out, format!("  ... and {} more", writes.len() - show));
                }
            }
        }
        if !self.merges.is_empty() {
            line(&mut out, format!("\njoined: {}", self.merges.len()));
            for m in self.merges.iter().take(show) {
                line(
                    &mut out,
                    format!("  {}: {} ({})", m.label, m.copies.join(", "), m.evidence),
                );
            }
        }
        if !self.conflicts.is_empty() {
            line(&mut out, format!("\nconflicts: {}", self.conflicts.len()));
            for c in self.conflicts.iter().take(show) {
                line(
                    &mut out,
                    format!(
                        "  {} {}: {} from {} wins over {} from {} ({})",
                        c.label, c.field, c.kept, c.kept_from, c.lost, c.lost_from, c.reason
                    ),
                );
            }
        }
        out
    }

    /// One CSV per system in `dir` (`<connector>.csv`: op, object, record, label,
    /// external id, field, before, after; one row per field written).
    pub fn write_csv(&self, dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let mut files = Vec::new();
        for (id, s) in &self.systems {
            let path = dir.join(format!("{id}.csv"));
            let mut w = csv::Writer::from_path(&path)?;
            w.write_record([
                "op",
                "object",
                "record",
                "label",
                "external_id",
                "field",
                "before",
                "after",
            ])?;
            for (op, writes) in [("create", &s.creates), ("update", &s.updates)] {
                for write in writes {
                    for f in &write.fields {
                        w.write_record([
                            op.to_owned(),
                            write.object.clone(),
                            write.record.to_string(),
                            write.label.clone(),
                            write.external_id.clone().unwrap_or_default(),
                            f.field.clone(),
                            f.before.as_ref().map(json_cell).unwrap_or_default(),
                            json_cell(&f.after),
                        ])?;
                    }
                }
            }
            w.flush()?;
            files.push(path);
        }
        Ok(files)
    }
}

fn json_cell(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_counts_then_each_write_with_before_and_after() {
        let mut p = Plan {
            canonical: 1,
            ..Plan::default()
        };
        p.read
            .entry("hubspot".into())
            .or_default()
            .insert("contacts".into(), 2);
        let s = p.systems.entry("salesforce".into()).or_default();
        s.updates.push(Write {
            object: "Contact".into(),
            record: Uuid::nil(),
            label: "ada@example.com".into(),
            external_id: Some("003A".into()),
            fields: vec![FieldChange {
                field: "Title".into(),
                before: Some(Json::from("Engineer")),
                after: Json::from("CTO"),
            }],
        });
        let t = p.table(10);
        assert!(
            t.contains("read 2 records; they are 1 canonical records"),
            "{t}"
        );
        assert!(
            t.contains("salesforce                        0        0        1"),
            "{t}"
        );
        assert!(t.contains("  Contact ada@example.com 003A"), "{t}");
        assert!(t.contains("      Title: \"Engineer\" -> \"CTO\""), "{t}");
        let dir = tempfile::tempdir().unwrap();
        let files = p.write_csv(dir.path()).unwrap();
        let csv = std::fs::read_to_string(&files[0]).unwrap();
        assert_eq!(
            csv.lines().nth(1),
            Some("update,Contact,00000000-0000-0000-0000-000000000000,ada@example.com,003A,Title,Engineer,CTO")
        );
    }
}
