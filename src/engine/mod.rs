//! The engine: turns many systems' copies of a customer into one canonical record and
//! works out what each system must be told.
//!
//! `Engine::apply` takes one page of changes from one connector and writes records,
//! links, indexes, outbox entries, audit entries and the page's cursor in ONE atomic
//! batch. A crash anywhere means the page is fetched and applied again, with the same
//! result: applying a page is idempotent.

mod blocks;
pub mod codec;
pub mod counts;
pub mod identity;
pub mod mapping;
pub mod normalize;
pub mod policy;
pub mod quality;
pub mod retention;
pub mod valuemaps;

pub mod rejected;
mod txn;
pub mod view;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use revsync_sdk::{Change, Kind, Record};
use uuid::Uuid;

use crate::config::{Config, ConfigError, DeletePolicy};
use crate::store::{Store, StoreError, Table};
use codec::{AuditEntry, DeadLetter, OutboxEntry};
pub use mapping::Mappings;
pub use policy::Policies;
pub use txn::EditOutcome;
use txn::Txn;
pub use txn::{diff, Act, ActOutcome, Event, FieldChange, Unmerged, WORKFLOW_PREFIX};

/// Entries one store call reads when the engine walks a range it needs whole.
pub const SCAN_PAGE: usize = 1024;

/// The most entries one listing request returns (dead letters), whatever it asks for.
pub const MAX_LIST: usize = 10_000;

/// A record as one system's fields: what a push sends.
pub type Projection = BTreeMap<String, serde_json::Value>;

/// One page of changes from one connector object, with the cursor that follows it.
#[derive(Debug, Clone)]
pub struct Page {
    pub object: String,
    pub changes: Vec<Change>,
    /// Stored in the same batch as the data it covers: never ahead of it.
    pub cursor: Option<String>,
}

/// Records of a kind `train_identity` reads at most.
pub const TRAIN_RECORDS: usize = 200_000;

fn model_key(kind: Kind) -> Vec<u8> {
    format!("identity_model\0{kind}").into_bytes()
}

/// Keep `model` as its kind's trained model in `store`, used from the next start (what
/// `train_identity` does with the model it estimates; for tools and benchmarks that
/// carry a model from one store to another).
pub fn install_model(store: &dyn Store, model: &identity::Model) -> Result<(), EngineError> {
    let json = serde_json::to_vec(model).map_err(|e| EngineError::Corrupt {
        table: "meta",
        detail: e.to_string(),
    })?;
    let mut b = crate::store::WriteBatch::new();
    b.put(Table::Meta, model_key(model.kind), json.clone());
    b.put(
        Table::Meta,
        format!("identity_model\0{}\0{:010}", model.kind, model.version).into_bytes(),
        json,
    );
    store.write(b)?;
    Ok(())
}

/// The trained model of a kind kept in `Meta`, if any.
fn stored_model(store: &dyn Store, kind: Kind) -> Result<Option<identity::Model>, EngineError> {
    let Some(bytes) = store.get(Table::Meta, &model_key(kind))? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| EngineError::Corrupt {
            table: "meta",
            detail: format!("identity model of {kind}: {e}"),
        })
}

/// A pair of records waiting for an operator's review (issue 19).
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub a: Uuid,
    pub b: Uuid,
    pub pair: codec::ReviewPair,
}

impl Review {
    /// The pair's id in the admin API and CLI: both record ids, older first.
    pub fn id(&self) -> String {
        format!("{}.{}", self.a, self.b)
    }
}

/// What one `apply` did, for counters and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub changes: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Older than what the record already holds from that same copy.
    pub stale: usize,
    /// At or before the copy's newest known time (an overlap window read again, an event
    /// delivered twice): nothing new, so not counted as read.
    pub replayed: usize,
    /// Of the reports at or before the copy's newest known time, those that are what
    /// revsync itself wrote there: its own write read back (polling sees every write),
    /// not an overlap read again. Counted here, not in `replayed`.
    pub echoed: usize,
    pub merged: usize,
    /// Copies joined to a record on their scored match (issue 19), also in `merged` when
    /// two records became one.
    pub scored_merged: usize,
    /// Pairs put in the review queue.
    pub to_review: usize,
    /// Scored matches a guard forbade.
    pub vetoed: usize,
    pub deleted: usize,
    pub enqueued: usize,
    /// Records outside their object's `filter:`: not brought in.
    pub filtered: usize,
    /// Bad values skipped (each also in the record's audit trail).
    pub invalid: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("corrupt {table} entry: {detail}")]
    Corrupt { table: &'static str, detail: String },
    #[error("connector `{connector}` has no mapping for object `{object}`")]
    UnknownObject { connector: String, object: String },
    /// A bug (or the store) panicked inside a write. Nothing of that write is kept; the
    /// engine goes on serving other writes.
    #[error("write panicked: {0}")]
    Panicked(String),
    /// An operator's request a rule forbids (a merge a guard vetoes); nothing was written.
    #[error("{0}")]
    Refused(String),
}

/// Microseconds since the epoch; injectable so tests control time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp_micros())
}

/// Told which records of the kinds that keep history (subscriptions, deals, invoices,
/// tickets) a write changed, after it reached the store and before the next write starts:
/// the incremental KPI state (src/kpi/live.rs) re-reads those and nothing else.
pub trait RevenueObserver: Send + Sync {
    fn changed(&self, store: &dyn Store, ids: &BTreeSet<Uuid>);
}

pub struct Engine {
    store: Arc<dyn Store>,
    mappings: Mappings,
    policies: Policies,
    deletes: HashMap<String, DeletePolicy>,
    outbox_seq: AtomicU64,
    /// One writer: identity decisions read then write, and must not interleave.
    writer: Mutex<()>,
    clock: Clock,
    outbox_signal: Arc<tokio::sync::Notify>,
    /// Outbox depth and dead letters per connector, kept as entries move.
    counts: counts::Counters,
    revenue: OnceLock<Arc<dyn RevenueObserver>>,
    identity_counts: IdentityCounts,
    /// Whether writes describe their changes in `Table::Events` (someone consumes them).
    events: std::sync::atomic::AtomicBool,
    /// Some record carries a route (`META_ROUTES`).
    routes: std::sync::atomic::AtomicBool,
    events_signal: Arc<tokio::sync::Notify>,
}

/// What scored identity did since start, and the review queue's length.
#[derive(Default)]
struct IdentityCounts {
    scored_merged: AtomicU64,
    to_review: AtomicU64,
    vetoed: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    unmerged: AtomicU64,
    pending_review: AtomicU64,
}

/// `/status` `identity` and the `revsync_identity_*` metrics.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct IdentityStats {
    /// Copies that joined a record on their scored match, since start.
    pub scored_merged: u64,
    /// Pairs sent to the review queue, since start.
    pub to_review: u64,
    /// Scored matches a guard forbade, since start.
    pub vetoed: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Merges an operator undid (`records unmerge`), since start.
    pub unmerged: u64,
    /// Pairs waiting in the review queue now.
    pub pending_review: u64,
}

impl Engine {
    /// Compile mappings and policies from the configuration (every error reported).
    pub fn validate(config: &Config) -> Result<(Mappings, Policies), Vec<ConfigError>> {
        let m = Mappings::compile(config);
        let p = Policies::from_config(config);
        match (m, p) {
            (Ok(m), Ok(p)) => Ok((m, p)),
            (m, p) => Err(m
                .err()
                .into_iter()
                .flatten()
                .chain(p.err().into_iter().flatten())
                .collect()),
        }
    }

    pub fn new(
        store: Arc<dyn Store>,
        config: &Config,
        mappings: Mappings,
        policies: Policies,
        clock: Clock,
    ) -> Result<Self, EngineError> {
        let seq = stored_outbox_seq(store.as_ref())?;
        let counts = counts::Counters::count(store.as_ref())?;
        let mut policies = policies;
        for kind in [Kind::Person, Kind::Organization] {
            if let Some(trained) = stored_model(store.as_ref(), kind)? {
                let version = trained.version;
                if policies.use_trained(trained) {
                    tracing::info!(kind = %kind, version, "scored identity uses the trained model");
                } else if policies.identity(kind).is_some() {
                    tracing::warn!(kind = %kind, version, "the trained identity model no longer fits the configured comparisons; the configured m and u are used: run `revsync identity train` again");
                }
            }
        }
        blocks::ensure(store.as_ref(), &policies)?;
        let routes = store.get(Table::Meta, codec::META_ROUTES)?.is_some();
        let mut pending = 0usize;
        for page in crate::store::scan_pages(
            store.as_ref(),
            Table::Index,
            codec::index::REVIEWS,
            SCAN_PAGE,
        ) {
            pending += page?.len();
        }
        Ok(Self {
            store,
            counts,
            mappings,
            policies,
            deletes: config
                .connectors
                .iter()
                .map(|(_, c)| (c.id.clone(), c.deletes))
                .collect(),
            outbox_seq: AtomicU64::new(seq),
            writer: Mutex::new(()),
            clock,
            outbox_signal: Arc::new(tokio::sync::Notify::new()),
            revenue: OnceLock::new(),
            events: std::sync::atomic::AtomicBool::new(false),
            routes: std::sync::atomic::AtomicBool::new(routes),
            events_signal: Arc::new(tokio::sync::Notify::new()),
            identity_counts: IdentityCounts {
                pending_review: AtomicU64::new(pending as u64),
                ..IdentityCounts::default()
            },
        })
    }

    /// Sets the one observer of revenue records; false when one is already set.
    pub fn observe_revenue(&self, observer: Arc<dyn RevenueObserver>) -> bool {
        self.revenue.set(observer).is_ok()
    }

    /// Runs `f` over the store with no write in progress or starting until it returns: a
    /// full read that must see one state, not a write half applied to what it derives.
    pub fn quiesced<T>(&self, f: impl FnOnce(&dyn Store) -> T) -> T {
        let _guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        f(self.store.as_ref())
    }

    /// A stored write's moves: queue counts, then the revenue observer.
    fn committed(&self, moves: &counts::Moves) {
        self.counts.apply(moves);
        if moves.routes {
            self.routes.store(true, Ordering::SeqCst);
        }
        if let Some(o) = self.revenue.get().filter(|_| !moves.revenue.is_empty()) {
            o.changed(self.store.as_ref(), &moves.revenue);
        }
    }

    pub fn mappings(&self) -> &Mappings {
        &self.mappings
    }

    /// Apply one page atomically. Bad values are skipped and reported; the rest applies.
    pub fn apply(&self, connector: &str, page: Page) -> Result<ApplyReport, EngineError> {
        self.apply_rejecting(connector, page, &[])
    }

    /// Apply one page and keep the records the connector could not decode as inbound
    /// dead letters, all in one write: a crash loses neither, and the cursor never moves
    /// past a record that is not kept somewhere.
    pub fn apply_rejecting(
        &self,
        connector: &str,
        page: Page,
        rejects: &[revsync_sdk::Rejected],
    ) -> Result<ApplyReport, EngineError> {
        let mapping = self.mappings.get(connector, &page.object).ok_or_else(|| {
            EngineError::UnknownObject {
                connector: connector.into(),
                object: page.object.clone(),
            }
        })?;
        self.exclusive(|| self.apply_locked(connector, mapping, page, rejects))
    }

    fn apply_locked(
        &self,
        connector: &str,
        mapping: &mapping::ObjectMapping,
        page: Page,
        rejects: &[revsync_sdk::Rejected],
    ) -> Result<ApplyReport, EngineError> {
        let now = (self.clock)();
        let mut txn = Txn::new(
            self.store.as_ref(),
            &self.mappings,
            &self.policies,
            now,
            self.outbox_seq.load(Ordering::SeqCst),
        );
        if self.events.load(Ordering::Relaxed) {
            txn.emit_events(0, !self.backfilled(connector, &page.object)?);
        }
        txn.with_routes(self.routes.load(Ordering::Relaxed));
        let delete_policy = self.deletes.get(connector).copied().unwrap_or_default();
        let mut report = ApplyReport {
            changes: page.changes.len(),
            ..Default::default()
        };
        for change in &page.changes {
            txn.apply_change(mapping, delete_policy, change, &mut report)?;
        }
        let (mut batch, seq, moves) =
            txn.finish(connector, &page.object, page.cursor.as_deref())?;
        for r in rejects {
            rejected::put(
                &mut batch,
                &rejected::InboundDeadLetter {
                    connector: connector.to_owned(),
                    object: r.object.clone(),
                    external_id: r.external_id.clone(),
                    source: "poll".into(),
                    raw: Some(r.raw.clone()),
                    change: None,
                    error: r.error.clone(),
                    attempts: 1,
                    failed_ts: now,
                },
            );
        }
        // The crash test's worst moment: a page with changes is built, none of it written.
        #[cfg(feature = "failpoints")]
        if !page.changes.is_empty() {
            crash_point("engine-apply-write", connector, &page.object);
        }
        self.store.write(batch)?;
        self.committed(&moves);
        self.outbox_seq.store(seq, Ordering::SeqCst);
        if moves.events {
            self.events_signal.notify_waiters();
        }
        let ic = &self.identity_counts;
        for (counter, n) in [
            (&ic.scored_merged, report.scored_merged),
            (&ic.to_review, report.to_review),
            (&ic.vetoed, report.vetoed),
            (&ic.pending_review, report.to_review),
        ] {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
        if report.enqueued > 0 {
            self.outbox_signal.notify_waiters();
        }
        Ok(report)
    }

    /// An operator's edit of one record's canonical fields, applied with the same field
    /// rules as a system's change (`source` is its provenance, e.g. `console`) and pushed
    /// to every system holding a copy. `None`: no such record.
    pub fn edit(
        &self,
        id: Uuid,
        values: &BTreeMap<String, revsync_sdk::Value>,
        source: &str,
    ) -> Result<Option<Vec<(String, txn::EditOutcome)>>, EngineError> {
        let mut outcome = None;
        self.write_with(|txn| {
            outcome = txn.apply_edit(id, values, source)?;
            Ok(())
        })?;
        Ok(outcome.map(|o| values.keys().cloned().zip(o).collect()))
    }

    /// From now on every write describes what it changed in `Table::Events`, for a
    /// consumer (workflows) to take with [`Engine::act`]. Off: the events left are dropped.
    pub fn emit_events(&self, on: bool) -> Result<(), EngineError> {
        self.events.store(on, Ordering::SeqCst);
        if !on {
            let _guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                let page = self.store.scan(Table::Events, b"", None, SCAN_PAGE)?;
                if page.is_empty() {
                    break;
                }
                let mut batch = crate::store::WriteBatch::new();
                for (k, _) in page {
                    batch.delete(Table::Events, k);
                }
                self.store.write(batch)?;
            }
        }
        Ok(())
    }

    /// The oldest `limit` events not yet consumed, with their sequence numbers.
    pub fn events(&self, limit: usize) -> Result<Vec<(u64, txn::Event)>, EngineError> {
        self.store
            .scan(Table::Events, b"", None, limit)?
            .into_iter()
            .map(|(k, v)| {
                let seq = k
                    .as_slice()
                    .try_into()
                    .map(u64::from_be_bytes)
                    .unwrap_or_default();
                let event = codec::decode(&v).map_err(|e| EngineError::Corrupt {
                    table: "events",
                    detail: e.to_string(),
                })?;
                Ok((seq, event))
            })
            .collect()
    }

    /// Records whose fields refer to `id` (a company's people, deals and tickets), at
    /// most `limit`.
    pub fn referrers(&self, id: Uuid, limit: usize) -> Result<Vec<Uuid>, EngineError> {
        let prefix = codec::index::referrers_of(id);
        Ok(self
            .store
            .scan(Table::Index, &prefix, None, limit)?
            .into_iter()
            .filter_map(|(k, _)| k.get(prefix.len()..).and_then(|b| Uuid::from_slice(b).ok()))
            .collect())
    }

    /// Woken after a write that left events.
    pub fn events_signal(&self) -> Arc<tokio::sync::Notify> {
        self.events_signal.clone()
    }

    /// A consumer's step, as one write: `acts` carried out (each with its source as the
    /// provenance of what it writes; the events they cause are at `depth`), the events
    /// it took deleted and its own `notes` written. A crash leaves all of it or none.
    pub fn act(
        &self,
        depth: u8,
        acts: &[(txn::Act, String)],
        consumed: &[(Table, Vec<u8>)],
        notes: impl FnOnce(&[txn::ActOutcome]) -> Vec<(Table, Vec<u8>, Vec<u8>)>,
    ) -> Result<Vec<txn::ActOutcome>, EngineError> {
        let mut outcomes = Vec::with_capacity(acts.len());
        self.exclusive(|| {
            self.write_at_depth(depth, |txn| {
                for (act, source) in acts {
                    outcomes.push(txn.act(act, source)?);
                }
                for (table, key) in consumed {
                    txn.del_raw(*table, key.clone());
                }
                for (table, key, value) in notes(&outcomes) {
                    txn.put_raw(table, key, value);
                }
                Ok(())
            })
        })?;
        Ok(outcomes)
    }

    /// `revsync identity train`: estimate `kind`'s model from the records in the store (the
    /// first [`TRAIN_RECORDS`] of the kind) and keep it as the next version, which the
    /// daemon uses from its next start: a model never changes under a running daemon.
    /// `None` for a kind with no model (deals, tickets...).
    pub fn train_identity(
        &self,
        kind: Kind,
        seed: u64,
    ) -> Result<Option<(identity::Model, identity::train::TrainReport)>, EngineError> {
        // With scored matching off the shipped model is trained: the best data to train on
        // is a store whose duplicates no score has merged yet (see docs/configuration.md).
        let Some(mut base) = self
            .policies
            .identity(kind)
            .cloned()
            .or_else(|| identity::default_for(kind))
        else {
            return Ok(None);
        };
        if let Some(stored) = stored_model(self.store.as_ref(), kind)? {
            base.version = base.version.max(stored.version);
        }
        let mut samples = Vec::new();
        blocks::for_each_live(self.store.as_ref(), kind, |rec| {
            let get = |f: &str| rec.value(f);
            samples.push(identity::train::Sample {
                profile: base.profile(&get),
                keys: base.block_keys(&get),
            });
            samples.len() < TRAIN_RECORDS
        })?;
        samples.truncate(TRAIN_RECORDS);
        let (model, report) = identity::train::train(&base, &samples, seed);
        install_model(self.store.as_ref(), &model)?;
        Ok(Some((model, report)))
    }

    fn review_settled(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        let _ = self.identity_counts.pending_review.fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |n| n.checked_sub(1),
        );
    }

    /// `revsync quality`: every problem of the live persons' and companies' values, per
    /// problem and per system, with examples; only `connector`'s values when given. Reads
    /// every person and company once.
    pub fn quality(&self, connector: Option<&str>) -> Result<quality::Report, EngineError> {
        let mut report = quality::Report::new(connector.map(str::to_owned));
        for kind in [Kind::Person, Kind::Organization] {
            blocks::for_each_live(self.store.as_ref(), kind, |r| {
                report.add(r);
                true
            })?;
        }
        Ok(report.finish())
    }

    /// What scored identity did since start, and the review queue's length.
    pub fn identity_stats(&self) -> IdentityStats {
        let c = &self.identity_counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        IdentityStats {
            scored_merged: get(&c.scored_merged),
            to_review: get(&c.to_review),
            vetoed: get(&c.vetoed),
            accepted: get(&c.accepted),
            rejected: get(&c.rejected),
            unmerged: get(&c.unmerged),
            pending_review: get(&c.pending_review),
        }
    }

    /// Pairs waiting for review, oldest record first, at most `limit`.
    pub fn reviews(&self, limit: usize) -> Result<Vec<Review>, EngineError> {
        let entries = self.store.scan(
            Table::Index,
            codec::index::REVIEWS,
            None,
            limit.min(MAX_LIST),
        )?;
        entries
            .into_iter()
            .filter_map(|(k, v)| {
                let rest = k.get(codec::index::REVIEWS.len()..)?;
                let a = Uuid::from_slice(rest.get(..16)?).ok()?;
                let b = Uuid::from_slice(rest.get(17..33)?).ok()?;
                Some(
                    codec::decode::<codec::ReviewPair>(&v)
                        .map(|pair| Review { a, b, pair })
                        .map_err(|e| EngineError::Corrupt {
                            table: "index",
                            detail: e.to_string(),
                        }),
                )
            })
            .collect()
    }

    /// One pair waiting for review.
    pub fn review(&self, a: Uuid, b: Uuid) -> Result<Option<Review>, EngineError> {
        let Some(v) = self.store.get(Table::Index, &codec::index::review(a, b))? else {
            return Ok(None);
        };
        let pair = codec::decode(&v).map_err(|e| EngineError::Corrupt {
            table: "index",
            detail: e.to_string(),
        })?;
        let (a, b) = if a <= b { (a, b) } else { (b, a) };
        Ok(Some(Review { a, b, pair }))
    }

    /// Accept a review pair: the two records merge (the older id survives) and the result
    /// is pushed to every system. The survivor, or `None` when no such pair waits.
    pub fn accept_review(&self, a: Uuid, b: Uuid, by: &str) -> Result<Option<Uuid>, EngineError> {
        let mut out = None;
        self.write_with(|txn| {
            out = txn.accept_review(a, b, by)?;
            Ok(())
        })?;
        if out.is_some() {
            self.review_settled(&self.identity_counts.accepted);
        }
        Ok(out)
    }

    /// Reject a review pair: remembered, so the two are never proposed or merged by score
    /// again. `false` when no such pair waits.
    pub fn reject_review(&self, a: Uuid, b: Uuid) -> Result<bool, EngineError> {
        let mut out = false;
        self.write_with(|txn| {
            out = txn.reject_review(a, b)?;
            Ok(())
        })?;
        if out {
            self.review_settled(&self.identity_counts.rejected);
        }
        Ok(out)
    }

    /// Merge two records by an operator's say (the older id survives) and push the
    /// result; undone by [`Engine::unmerge`]. `None`: a record is missing or the two are
    /// of different kinds.
    pub fn merge(&self, a: Uuid, b: Uuid, by: &str) -> Result<Option<Uuid>, EngineError> {
        let mut out = None;
        self.write_with(|txn| {
            out = txn.merge_pair(a, b, by)?;
            Ok(())
        })?;
        Ok(out)
    }

    /// Undo a merge (issue 19): with `source` (`connector:object:external_id`), the merge
    /// that brought that copy into record `id`; without, `id`'s latest merge, or, when `id`
    /// is a record absorbed by a merge, that merge. The split-off side is a record of its
    /// own again, both are pushed to every system, and the two never merge again.
    pub fn unmerge(
        &self,
        id: Uuid,
        source: Option<&str>,
        by: &str,
    ) -> Result<Unmerged, EngineError> {
        let source = match source {
            Some(s) => match s.splitn(3, ':').collect::<Vec<_>>().as_slice() {
                [c, o, x] if !c.is_empty() && !o.is_empty() && !x.is_empty() => {
                    Some((c.to_string(), o.to_string(), x.to_string()))
                }
                _ => {
                    return Ok(Unmerged::Refused(format!(
                        "`{s}` is not connector:object:external_id"
                    )))
                }
            },
            None => None,
        };
        let mut out = Unmerged::Refused(String::new());
        self.write_with(|txn| {
            out = txn.unmerge(
                id,
                source
                    .as_ref()
                    .map(|(c, o, x)| (c.as_str(), o.as_str(), x.as_str())),
                by,
            )?;
            Ok(())
        })?;
        if matches!(out, Unmerged::Done { .. }) {
            self.identity_counts
                .unmerged
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(out)
    }

    /// Connectors an operator paused (`Meta`), so a pause outlives a restart.
    pub fn paused(&self) -> Result<BTreeSet<String>, EngineError> {
        Ok(self
            .store
            .scan(Table::Meta, PAUSED_PREFIX, None, MAX_LIST)?
            .into_iter()
            .filter_map(|(k, _)| {
                k.strip_prefix(PAUSED_PREFIX)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
            })
            .collect())
    }

    /// Keep (or drop) an operator's pause of `connector`.
    pub fn set_paused(&self, connector: &str, paused: bool) -> Result<(), EngineError> {
        let key = [PAUSED_PREFIX, connector.as_bytes()].concat();
        self.write_with(|txn| {
            if paused {
                txn.put_raw(Table::Meta, key, Vec::new());
            } else {
                txn.del_raw(Table::Meta, key);
            }
            Ok(())
        })
    }

    /// The stored cursor of a connector object.
    pub fn cursor(&self, connector: &str, object: &str) -> Result<Option<String>, EngineError> {
        Ok(self
            .store
            .get(Table::Cursors, &codec::cursor_key(connector, object))?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    pub fn record(&self, id: Uuid) -> Result<Option<Record>, EngineError> {
        read_record(self.store.as_ref(), id)
    }

    /// Find a record by email, domain, canonical id or `connector:object:external_id`,
    /// following merges to the surviving record.
    pub fn find(&self, query: &str) -> Result<Option<Record>, EngineError> {
        let q = query.trim();
        let id = if let Ok(id) = Uuid::parse_str(q) {
            Some(id)
        } else if let Some((c, rest)) = q.split_once(':').filter(|_| !q.contains('@')) {
            match rest.split_once(':') {
                Some((o, x)) => self.lookup_id(Table::Links, &codec::link_key(c, o, x))?,
                None => None,
            }
        } else if let Some(e) = normalize::email(q).filter(|_| q.contains('@')) {
            self.lookup_id(Table::Index, &codec::index::email(&e.value))?
        } else if let Some(d) = normalize::domain(q) {
            self.lookup_id(Table::Index, &codec::index::domain(&d))?
        } else {
            None
        };
        let Some(mut id) = id else { return Ok(None) };
        for _ in 0..16 {
            match self.record(id)? {
                Some(r) => match r.merged_into {
                    Some(next) => id = next,
                    None => return Ok(Some(r)),
                },
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    fn lookup_id(&self, table: Table, key: &[u8]) -> Result<Option<Uuid>, EngineError> {
        self.store
            .get(table, key)?
            .map(|b| uuid_from(&b))
            .transpose()
    }

    /// A record's audit trail, oldest first (at most `limit` entries, the newest ones):
    /// read from its end, so a long trail costs only what is shown.
    pub fn audit(&self, id: Uuid, limit: usize) -> Result<Vec<AuditEntry>, EngineError> {
        let mut newest = self
            .store
            .scan_rev(Table::Audit, id.as_bytes(), None, limit)?;
        newest.reverse();
        newest
            .iter()
            .map(|(_, v)| {
                codec::decode(v).map_err(|e| EngineError::Corrupt {
                    table: "audit",
                    detail: e.to_string(),
                })
            })
            .collect()
    }

    /// Start a pass of audit retention (see [`retention`]): run it with
    /// [`retention::AuditPruner::step`] over [`Engine::store`], off the async threads.
    pub fn audit_pruner(&self, max_per_record: u64, max_age_days: u64) -> retention::AuditPruner {
        let cutoff = (max_age_days > 0).then(|| {
            let age =
                i64::try_from(max_age_days.saturating_mul(86_400_000_000)).unwrap_or(i64::MAX);
            (self.clock)().saturating_sub(age)
        });
        retention::AuditPruner::new(
            usize::try_from(max_per_record).unwrap_or(usize::MAX),
            cutoff,
        )
    }

    /// The store under the engine, for background passes that work in bounded pages.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// A connector's pending pushes, in order.
    pub fn outbox(
        &self,
        connector: &str,
        limit: usize,
    ) -> Result<Vec<(u64, OutboxEntry)>, EngineError> {
        self.outbox_after(connector, None, limit)
    }

    /// Up to `limit` queued entries of `connector` after sequence `after`, in order.
    pub fn outbox_after(
        &self,
        connector: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, OutboxEntry)>, EngineError> {
        let mut out = Vec::new();
        // Chunks hold 1 to OUTBOX_CHUNK_MAX entries: read a few at a time until `limit`.
        let per_scan = limit.div_ceil(codec::OUTBOX_CHUNK_MAX).clamp(1, 64);
        self.outbox_chunks(connector, after, per_scan, |chunk| {
            out.extend(
                chunk
                    .into_iter()
                    .filter(|(seq, _)| after.is_none_or(|a| *seq > a)),
            );
            out.len() < limit
        })?;
        out.truncate(limit);
        Ok(out)
    }

    /// Entries in `connector`'s outbox, counted up to about `cap`.
    pub fn outbox_len(&self, connector: &str, cap: usize) -> Result<usize, EngineError> {
        let mut n = 0;
        self.outbox_chunks(connector, None, 256, |chunk| {
            n += chunk.len();
            n < cap
        })?;
        Ok(n.min(cap))
    }

    /// `connector`'s outbox chunks in order, from the one holding the first sequence after
    /// `after`, read `per_scan` at a time, while `each` asks for more.
    fn outbox_chunks(
        &self,
        connector: &str,
        after: Option<u64>,
        per_scan: usize,
        mut each: impl FnMut(codec::OutboxChunk) -> bool,
    ) -> Result<(), EngineError> {
        let prefix = codec::outbox_prefix(connector);
        let mut from = after.map(|seq| codec::outbox_key(connector, seq));
        loop {
            let chunks = self
                .store
                .scan(Table::Outbox, &prefix, from.as_deref(), per_scan)?;
            let Some((last, _)) = chunks.last() else {
                return Ok(());
            };
            from = Some(last.clone());
            for (k, v) in &chunks {
                let chunk = codec::decode_outbox_chunk(k, v).map_err(|e| EngineError::Corrupt {
                    table: "outbox",
                    detail: e.to_string(),
                })?;
                if !each(chunk) {
                    return Ok(());
                }
            }
        }
    }

    /// Record that `connector` confirmed holding `record`'s projection `hash` (and, for a
    /// create, its new external id), and drop the outbox entries it covered, atomically.
    pub fn confirm_push(
        &self,
        connector: &str,
        seqs: &[u64],
        record: Uuid,
        object: &str,
        hash: codec::Hash,
        created_external_id: Option<&str>,
    ) -> Result<(), EngineError> {
        // Tests: the store refusing this write (`return(connector)` arms it for one
        // connector), so the dispatcher's path for an answer it cannot record is exercised.
        #[cfg(feature = "failpoints")]
        if fail::eval("engine-confirm-push", |target| {
            target.is_none_or(|t| t == connector)
        }) == Some(true)
        {
            return Err(EngineError::Store(crate::store::StoreError::Io(
                sled::Error::Io(std::io::Error::other("failpoint engine-confirm-push")),
            )));
        }
        self.write_with(|txn| {
            txn.confirm_push(connector, seqs, record, object, hash, created_external_id)
        })
    }

    /// Record, before a push goes out, the projections it sends to `connector`'s
    /// `object`: a read of one of them is revsync's own write coming back (ADR 0025).
    pub fn mark_sent(
        &self,
        connector: &str,
        object: &str,
        sent: &[(Uuid, codec::Hash)],
    ) -> Result<(), EngineError> {
        self.write_with(|txn| {
            for (record, hash) in sent {
                txn.mark_sent(connector, object, *record, *hash)?;
            }
            Ok(())
        })
    }

    /// Keep a failed push in the outbox, to be tried again at `entry.not_before`, with its
    /// new attempt count. `superseded` are older entries coalesced into it (the push is
    /// built from the record as it is now): they go, or they would be due at once and
    /// skip the backoff.
    pub fn reschedule(
        &self,
        connector: &str,
        seq: u64,
        entry: &OutboxEntry,
        superseded: &[u64],
    ) -> Result<(), EngineError> {
        self.write_with(|txn| {
            for s in superseded.iter().filter(|s| **s != seq) {
                txn.outbox_remove(connector, *s);
            }
            txn.outbox_replace(connector, seq, entry.clone());
            Ok(())
        })
    }

    /// Move refused pushes out of the outbox into the dead-letter queue.
    pub fn dead_letter(
        &self,
        connector: &str,
        seqs: &[u64],
        letter: &DeadLetter,
    ) -> Result<(), EngineError> {
        let Some(&first) = seqs.first() else {
            return Ok(());
        };
        self.write_with(|txn| {
            for seq in seqs {
                txn.outbox_remove(connector, *seq);
            }
            txn.put_raw(
                Table::DeadLetters,
                codec::dead_letter_key(connector, first),
                codec::encode(letter),
            );
            Ok(())
        })
    }

    /// Dead letters of one connector (or all: `None`), oldest first.
    pub fn dead_letters(
        &self,
        connector: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, u64, DeadLetter)>, EngineError> {
        let prefix = connector.map(codec::outbox_prefix).unwrap_or_default();
        self.store
            .scan(Table::DeadLetters, &prefix, None, limit.min(MAX_LIST))?
            .into_iter()
            .map(|(k, v)| {
                let (conn, seq) = codec::split_seq_key(&k);
                codec::decode(&v)
                    .map(|d| (conn, seq, d))
                    .map_err(|e| EngineError::Corrupt {
                        table: "dead_letters",
                        detail: e.to_string(),
                    })
            })
            .collect()
    }

    /// Put a dead letter back in its connector's outbox; false when there is none.
    pub fn replay_dead_letter(&self, connector: &str, seq: u64) -> Result<bool, EngineError> {
        let key = codec::dead_letter_key(connector, seq);
        let Some(bytes) = self.store.get(Table::DeadLetters, &key)? else {
            return Ok(false);
        };
        let letter: DeadLetter = codec::decode(&bytes).map_err(|e| EngineError::Corrupt {
            table: "dead_letters",
            detail: e.to_string(),
        })?;
        self.write_with(|txn| {
            txn.del_raw(Table::DeadLetters, key.clone());
            txn.requeue(connector, letter.entry.clone());
            Ok(())
        })?;
        self.outbox_signal.notify_waiters();
        Ok(true)
    }

    /// Put every dead letter of one connector (or all: `None`) back in its outbox, a page
    /// of keys at a time; how many went back. Letters written while it runs (a replayed
    /// push refused again) wait for the next replay: it ends at the last one there now.
    pub fn replay_dead_letters(&self, connector: Option<&str>) -> Result<usize, EngineError> {
        let prefix = connector.map(codec::outbox_prefix).unwrap_or_default();
        let Some((last, _)) = self
            .store
            .scan_rev(Table::DeadLetters, &prefix, None, 1)?
            .pop()
        else {
            return Ok(0);
        };
        let (mut replayed, mut after) = (0, None::<Vec<u8>>);
        loop {
            let page = self
                .store
                .scan(Table::DeadLetters, &prefix, after.as_deref(), SCAN_PAGE)?;
            for (key, _) in &page {
                if *key > last {
                    return Ok(replayed);
                }
                let (conn, seq) = codec::split_seq_key(key);
                replayed += usize::from(self.replay_dead_letter(&conn, seq)?);
            }
            if page.len() < SCAN_PAGE {
                return Ok(replayed);
            }
            after = page.last().map(|(k, _)| k.clone());
        }
    }

    /// A connector's outbox depth and dead letters, as kept while entries move (no store
    /// read: cheap enough for every `/status`).
    pub fn queue_counts(&self, connector: &str) -> counts::QueueCounts {
        self.counts.get(connector)
    }

    /// The live counts, for writers of the outbox or dead letters outside [`Txn`] (see
    /// [`counts::Counters::apply`]).
    pub fn counters(&self) -> &counts::Counters {
        &self.counts
    }

    /// A connector's dead letters, counted up to `cap`.
    pub fn dead_letter_count(&self, connector: &str, cap: usize) -> Result<usize, EngineError> {
        Ok(self
            .store
            .scan(
                Table::DeadLetters,
                &codec::outbox_prefix(connector),
                None,
                cap,
            )?
            .len())
    }

    /// The projection hash `connector` is known to hold for `record` in `object`.
    pub fn held(
        &self,
        connector: &str,
        object: &str,
        record: Uuid,
    ) -> Result<Option<codec::Hash>, EngineError> {
        let Some(stored) = read_record_and_sync(self.store.as_ref(), record)? else {
            return Ok(None);
        };
        let states = stored.sync;
        Ok(states
            .get(&(connector.to_owned(), object.to_owned()))
            .and_then(|st| st.held))
    }

    /// Woken whenever entries are added to an outbox.
    pub fn outbox_signal(&self) -> Arc<tokio::sync::Notify> {
        self.outbox_signal.clone()
    }

    /// Whether `connector` has read `object` to its end at least once as the kind it is
    /// mapped to now. Until then its existing copies are not all linked as that kind, and
    /// a create of it could duplicate one.
    pub fn backfilled(&self, connector: &str, object: &str) -> Result<bool, EngineError> {
        let Some(kind) = self.mappings.get(connector, object).map(|m| m.kind) else {
            return Ok(false);
        };
        Ok(self
            .store
            .get(Table::Meta, &backfill_key(connector, object))?
            .is_some_and(|v| v == kind.as_str().as_bytes()))
    }

    /// Record that `object` was read to its end as the kind it is mapped to now.
    pub fn mark_backfilled(&self, connector: &str, object: &str) -> Result<(), EngineError> {
        let Some(kind) = self.mappings.get(connector, object).map(|m| m.kind) else {
            return Ok(());
        };
        self.write_with(|txn| {
            let key = backfill_key(connector, object);
            txn.put_raw(Table::Meta, key, kind.as_str().as_bytes().to_vec());
            Ok(())
        })
    }

    /// Objects whose `kind:` changed in the YAML since they were read to their end: their
    /// copies were linked as another kind, so each is read again from the start (cursor
    /// and marker dropped in one write) and, until that read ends, gates creates of its
    /// new kind. Returns `(connector, object, old kind, new kind)` for each. A marker
    /// written before markers named their kind says nothing: it is left to be rewritten by
    /// the next complete read.
    pub fn restart_reads_of_changed_kinds(
        &self,
    ) -> Result<Vec<(String, String, String, Kind)>, EngineError> {
        let mut restarted = Vec::new();
        for m in &self.mappings.objects {
            let key = backfill_key(&m.connector, &m.object);
            let Some(old) = self.store.get(Table::Meta, &key)? else {
                continue;
            };
            if old.is_empty() || old == m.kind.as_str().as_bytes() {
                continue;
            }
            self.write_with(|txn| {
                txn.del_raw(Table::Meta, key.clone());
                txn.del_raw(Table::Cursors, codec::cursor_key(&m.connector, &m.object));
                Ok(())
            })?;
            restarted.push((
                m.connector.clone(),
                m.object.clone(),
                String::from_utf8_lossy(&old).into_owned(),
                m.kind,
            ));
        }
        Ok(restarted)
    }

    /// Set a connector object's cursor alone (a completed full re-read).
    pub fn set_cursor(
        &self,
        connector: &str,
        object: &str,
        cursor: &str,
    ) -> Result<(), EngineError> {
        self.write_with(|txn| {
            txn.put_raw(
                Table::Cursors,
                codec::cursor_key(connector, object),
                cursor.as_bytes().to_vec(),
            );
            Ok(())
        })
    }

    fn write_with(
        &self,
        f: impl FnOnce(&mut Txn<'_>) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        self.exclusive(|| self.write_locked(f))
    }

    fn write_locked(
        &self,
        f: impl FnOnce(&mut Txn<'_>) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        self.write_at_depth(0, f)
    }

    fn write_at_depth(
        &self,
        depth: u8,
        f: impl FnOnce(&mut Txn<'_>) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let mut txn = Txn::new(
            self.store.as_ref(),
            &self.mappings,
            &self.policies,
            (self.clock)(),
            self.outbox_seq.load(Ordering::SeqCst),
        );
        if self.events.load(Ordering::Relaxed) {
            txn.emit_events(depth, false);
        }
        txn.with_routes(self.routes.load(Ordering::Relaxed));
        f(&mut txn)?;
        let before = self.outbox_seq.load(Ordering::SeqCst);
        let (batch, seq, moves) = txn.finish_without_cursor()?;
        self.store.write(batch)?;
        self.committed(&moves);
        self.outbox_seq.store(seq, Ordering::SeqCst);
        if moves.events {
            self.events_signal.notify_waiters();
        }
        // A confirmed create can queue pushes (referrers that can now name it, a merge):
        // the dispatchers need not wait for their next timer to see them.
        if seq != before {
            self.outbox_signal.notify_waiters();
        }
        Ok(())
    }

    /// Runs `f` as the only writer. A panic inside it is this write's error, not the
    /// engine's end: the batch is atomic, so the store holds all of it or none, and the
    /// outbox sequence is re-read from the store before the next writer starts.
    fn exclusive<T>(&self, f: impl FnOnce() -> Result<T, EngineError>) -> Result<T, EngineError> {
        // The lock guards no data of its own, so one a panic poisoned is still good.
        let _guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(result) => result,
            Err(panic) => {
                let detail = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                tracing::error!(%detail, "engine write panicked; nothing of it was kept");
                self.outbox_seq
                    .store(stored_outbox_seq(self.store.as_ref())?, Ordering::SeqCst);
                Err(EngineError::Panicked(detail))
            }
        }
    }

    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    /// The projection of `record` into `connector`'s `object`, with its hash: what a push sends.
    pub fn projection(
        &self,
        connector: &str,
        object: &str,
        record: &Record,
    ) -> Result<Option<(Projection, codec::Hash)>, EngineError> {
        self.projection_with(connector, object, record, &|_, _| None)
    }

    /// As [`Engine::projection`], for a plan: a relation to a record with no copy in
    /// `connector` yet is written as `unlinked(record, object)` says (the copy a create of
    /// the same run would make), not left out as a push would until that create is done.
    pub fn planned_projection(
        &self,
        connector: &str,
        object: &str,
        record: &Record,
        unlinked: &dyn Fn(Uuid, &str) -> Option<String>,
    ) -> Result<Option<Projection>, EngineError> {
        Ok(self
            .projection_with(connector, object, record, unlinked)?
            .map(|(p, _)| p))
    }

    fn projection_with(
        &self,
        connector: &str,
        object: &str,
        record: &Record,
        unlinked: &dyn Fn(Uuid, &str) -> Option<String>,
    ) -> Result<Option<(Projection, codec::Hash)>, EngineError> {
        let Some(m) = self.mappings.get(connector, object) else {
            return Ok(None);
        };
        // Checked again at push time: the Lead may have been linked after a push to
        // Contact was queued.
        if copy_elsewhere(record, connector, object) {
            return Ok(None);
        }
        // A create queued before the record said what it is (its lifecycle stage came from
        // a system read later) goes where `create_when:` sends it now: creates wait for
        // every first read, so by now the record is whole, and the choice does not depend
        // on which system happened to be read first.
        let absent = !record.links.iter().any(|l| l.connector == connector);
        if absent && self.mappings.create_target(record, connector) != Some(object) {
            return Ok(None);
        }
        let txn = self.reader();
        txn.project(m, record, unlinked).map(Some)
    }

    /// What a copy read from `connector`'s `object` holds, as a projection: compared
    /// with [`Engine::projection`], the fields a push would change there.
    pub fn copy_projection(
        &self,
        connector: &str,
        object: &str,
        fields: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Result<Option<Projection>, EngineError> {
        let Some(m) = self.mappings.get(connector, object) else {
            return Ok(None);
        };
        let txn = self.reader();
        txn.copy_projection(m, fields).map(Some)
    }

    /// A transaction that only reads (projections): it queues nothing, so no sequence.
    fn reader(&self) -> Txn<'_> {
        Txn::new(
            self.store.as_ref(),
            &self.mappings,
            &self.policies,
            (self.clock)(),
            0,
        )
    }

    pub fn kinds_for(&self, connector: &str) -> Vec<(String, Kind)> {
        self.mappings
            .objects
            .iter()
            .filter(|m| m.connector == connector)
            .map(|m| (m.object.clone(), m.kind))
            .collect()
    }
}

/// One copy per system: a record whose copy in `connector` lives in another object (a
/// person who is a Salesforce Lead) gets none in `object` (no Contact besides it). A
/// record's links are all copies of its one kind, so the object alone tells.
pub(crate) fn copy_elsewhere(record: &Record, connector: &str, object: &str) -> bool {
    let mut here = record.links.iter().filter(|l| l.connector == connector);
    record.link(connector, object).is_none() && here.any(|l| l.object != object)
}

pub(crate) fn read_record(store: &dyn Store, id: Uuid) -> Result<Option<Record>, EngineError> {
    store
        .get(Table::Records, &codec::record_key(id))?
        .map(|b| {
            codec::decode_record(&b).map_err(|e| EngineError::Corrupt {
                table: "records",
                detail: e.to_string(),
            })
        })
        .transpose()
}

/// A record as stored, with its sync states.
pub(crate) struct Stored {
    pub record: Record,
    pub sync: codec::SyncStates,
    /// The states came from the record's own key in `Pushed` (a store written before they
    /// moved into the record): that key must go when the record is next written.
    pub legacy_sync: bool,
}

pub(crate) fn read_record_and_sync(
    store: &dyn Store,
    id: Uuid,
) -> Result<Option<Stored>, EngineError> {
    let corrupt = |table| {
        move |e: postcard::Error| EngineError::Corrupt {
            table,
            detail: e.to_string(),
        }
    };
    let Some(bytes) = store.get(Table::Records, &codec::record_key(id))? else {
        return Ok(None);
    };
    let (record, sync) = codec::decode_record_and_sync(&bytes).map_err(corrupt("records"))?;
    let (sync, legacy_sync) = match sync {
        Some(s) => (s, false),
        None => match store.get(Table::Pushed, &codec::sync_key(id))? {
            Some(b) => (
                codec::decode_sync_states_v1(&b).map_err(corrupt("pushed"))?,
                true,
            ),
            None => (codec::SyncStates::new(), true),
        },
    };
    Ok(Some(Stored {
        record,
        sync,
        legacy_sync,
    }))
}

pub(crate) fn uuid_from(b: &[u8]) -> Result<Uuid, EngineError> {
    Uuid::from_slice(b.get(..16).unwrap_or_default()).map_err(|e| EngineError::Corrupt {
        table: "index",
        detail: e.to_string(),
    })
}

/// The unified JSON view of the record `query` names (email, domain, canonical id or
/// `connector:object:external_id`), with its latest `audit` entries.
/// The most audit entries one record lookup returns, whatever it asks for.
pub const MAX_AUDIT_SHOWN: usize = 1000;

pub fn lookup_view(
    engine: &Engine,
    query: &str,
    audit: usize,
) -> Result<Option<serde_json::Value>, EngineError> {
    let Some(rec) = engine.find(query)? else {
        return Ok(None);
    };
    let trail = engine.audit(rec.id, audit.min(MAX_AUDIT_SHOWN))?;
    // A relation reads as the record it points at, by name; a read error only loses the name.
    let related = |id: Uuid| {
        engine
            .record(id)
            .ok()
            .flatten()
            .as_ref()
            .and_then(view::label)
    };
    Ok(Some(view::record_json(&rec, &trail, &related)))
}

const PAUSED_PREFIX: &[u8] = b"paused\0";

fn backfill_key(connector: &str, object: &str) -> Vec<u8> {
    [
        b"backfilled\0".as_slice(),
        connector.as_bytes(),
        b"\0",
        object.as_bytes(),
    ]
    .concat()
}

/// The last outbox sequence number the store has.
fn stored_outbox_seq(store: &dyn Store) -> Result<u64, EngineError> {
    match store.get(Table::Meta, codec::META_OUTBOX_SEQ)? {
        Some(b) => Ok(u64::from_be_bytes(b.as_slice().try_into().map_err(
            |_| EngineError::Corrupt {
                table: "meta",
                detail: "outbox sequence is not 8 bytes".into(),
            },
        )?)),
        None => Ok(0),
    }
}

/// Dies with SIGKILL when the failpoint `name` is armed with `return(connector/object)`
/// for this page's object (e.g. `FAILPOINTS=engine-apply-write=return(zendesk/users)`).
#[cfg(feature = "failpoints")]
fn crash_point(name: &str, connector: &str, object: &str) {
    crash_at(name, &format!("{connector}/{object}"));
}

/// Dies with SIGKILL when the failpoint `name` is armed with `return(target)`.
#[cfg(feature = "failpoints")]
#[allow(
    unsafe_code,
    reason = "kill(2) of our own process, for the crash tests only"
)]
pub(crate) fn crash_at(name: &str, target: &str) {
    fail::fail_point!(name, |armed: Option<String>| {
        if armed.as_deref() == Some(target) {
            // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    });
}
