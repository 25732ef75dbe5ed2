//! The workflow runner: takes the engine's events in order, runs the rules they trigger,
//! and hands what the rules do back to the engine in the same write that consumes the
//! event. A crash before that write leaves the event to run again; after it, the run,
//! its acts and the consumed event are all kept: each run happens exactly once.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::eval::{self, WebhookCall};
use super::rules::{Rule, Rules};
use crate::engine::{Act, ActOutcome, Engine, EngineError, Event};
use crate::store::{Store, Table};

/// Events taken per write: one write per event keeps each run's acts apart.
const BATCH: usize = 64;
/// Run records kept per rule (older ones are dropped as new ones come).
pub const RUNS_KEPT: usize = 1_000;

/// One run of a rule, as `workflows runs` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub rule: String,
    /// When it ran (microseconds, UTC).
    pub at: i64,
    /// The event that triggered it.
    pub event: u64,
    pub record: Uuid,
    pub status: RunStatus,
    /// What it did (or, scheduled, will do), one line per action.
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub outcomes: Vec<ActOutcome>,
    #[serde(default)]
    pub error: Option<String>,
    pub depth: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Done,
    /// Waiting for its `after:` delay or its rule's rate cap.
    Scheduled,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Done => "done",
            RunStatus::Scheduled => "scheduled",
            RunStatus::Failed => "failed",
        }
    }
}

/// A run put off (an `after:` delay, a rate cap), kept until it is due.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Timer {
    rule: String,
    seq: u64,
    event: Event,
}

/// An outgoing webhook not yet delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookJob {
    pub rule: String,
    pub record: Uuid,
    pub event: u64,
    /// `rule:event:action`: the receiver's idempotency key, the same on every attempt.
    pub key: String,
    pub call: WebhookCall,
    pub attempts: u32,
    pub not_before: i64,
    #[serde(default)]
    pub last_error: Option<String>,
}

pub mod keys {
    use uuid::Uuid;

    pub fn run(rule: &str, at: i64, seq: u64, n: u8) -> Vec<u8> {
        let mut k = runs_of(rule);
        k.extend_from_slice(&at.to_be_bytes());
        k.extend_from_slice(&seq.to_be_bytes());
        k.push(n);
        k
    }
    pub fn runs_of(rule: &str) -> Vec<u8> {
        let mut k = b"r\0".to_vec();
        k.extend_from_slice(rule.as_bytes());
        k.push(0);
        k
    }
    pub fn timer(due: i64, seq: u64, rule: &str) -> Vec<u8> {
        let mut k = TIMERS.to_vec();
        k.extend_from_slice(&due.to_be_bytes());
        k.extend_from_slice(&seq.to_be_bytes());
        k.extend_from_slice(rule.as_bytes());
        k
    }
    pub const TIMERS: &[u8] = b"t\0";
    pub fn due_of(key: &[u8]) -> i64 {
        key.get(2..10)
            .and_then(|b| b.try_into().ok())
            .map_or(i64::MAX, i64::from_be_bytes)
    }
    pub fn webhook(seq: u64, rule: &str, action: usize, record: Uuid) -> Vec<u8> {
        let mut k = WEBHOOKS.to_vec();
        k.extend_from_slice(&seq.to_be_bytes());
        k.extend_from_slice(rule.as_bytes());
        k.push(0);
        k.extend_from_slice(&(action as u32).to_be_bytes());
        k.extend_from_slice(record.as_bytes());
        k
    }
    pub const WEBHOOKS: &[u8] = b"w\0";
}

/// Counts per rule since start (`/metrics`, `workflows list`).
#[derive(Debug, Default)]
pub struct RuleStats {
    pub runs: AtomicU64,
    pub actions: AtomicU64,
    pub failures: AtomicU64,
    pub scheduled: AtomicU64,
    pub webhooks_sent: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RuleCounts {
    pub runs: u64,
    pub actions: u64,
    pub failures: u64,
    pub scheduled: u64,
    pub webhooks_sent: u64,
}

impl RuleStats {
    pub fn read(&self) -> RuleCounts {
        RuleCounts {
            runs: self.runs.load(Ordering::Relaxed),
            actions: self.actions.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            scheduled: self.scheduled.load(Ordering::Relaxed),
            webhooks_sent: self.webhooks_sent.load(Ordering::Relaxed),
        }
    }
}

pub struct Runner {
    engine: Arc<Engine>,
    rules: Rules,
    env: minijinja::Environment<'static>,
    stats: BTreeMap<String, RuleStats>,
    /// Start times of each rule's runs in the last minute, for its rate cap.
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// What one rule decided about one event, before the write.
struct Decided {
    rule: String,
    run: Run,
    acts: Vec<Act>,
    webhooks: Vec<WebhookCall>,
    timer: Option<(i64, Timer)>,
}

impl Runner {
    pub fn new(engine: Arc<Engine>, rules: Rules) -> Self {
        let stats = rules
            .0
            .iter()
            .map(|r| (r.name.clone(), RuleStats::default()))
            .collect();
        Self {
            engine,
            rules,
            env: super::rules::environment(),
            stats,
            recent: Mutex::new(HashMap::new()),
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn stats(&self, rule: &str) -> RuleCounts {
        self.stats
            .get(rule)
            .map(RuleStats::read)
            .unwrap_or_default()
    }

    fn store(&self) -> &dyn Store {
        self.engine.store().as_ref()
    }

    /// Run every pending event and due timer; how many were taken.
    pub fn step(&self) -> Result<usize, EngineError> {
        let mut n = 0;
        for (seq, event) in self.engine.events(BATCH)? {
            tracing::debug!(seq, record = %event.record, kind = %event.kind, created = event.created, backfill = event.backfill, depth = event.depth, changes = event.changes.len(), "workflow event");
            let decided: Vec<Decided> = self
                .rules
                .0
                .iter()
                .filter(|r| eval::triggers(r, &event))
                .filter_map(|r| self.decide(r, seq, &event, false))
                .collect();
            self.commit(&event, (Table::Events, seq.to_be_bytes().to_vec()), decided)?;
            n += 1;
        }
        let now = self.engine.now();
        for (key, value) in self
            .store()
            .scan(Table::Workflows, keys::TIMERS, None, BATCH)?
        {
            if keys::due_of(&key) > now {
                break;
            }
            let timer: Timer = match serde_json::from_slice(&value) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "unreadable workflow timer dropped");
                    self.engine
                        .act(0, &[], &[(Table::Workflows, key)], |_| Vec::new())?;
                    continue;
                }
            };
            let decided = self
                .rules
                .get(&timer.rule)
                .and_then(|r| self.decide(r, timer.seq, &timer.event, true));
            self.commit(
                &timer.event,
                (Table::Workflows, key),
                decided.into_iter().collect(),
            )?;
            n += 1;
        }
        Ok(n)
    }

    /// What `rule` does about `event`: `None` when it does nothing (its own write, its
    /// condition false).
    fn decide(&self, rule: &Rule, seq: u64, event: &Event, due: bool) -> Option<Decided> {
        let source = rule.source();
        if event.only_by(&source) {
            return None;
        }
        let mut run = Run {
            rule: rule.name.clone(),
            at: self.engine.now(),
            event: seq,
            record: event.record,
            status: RunStatus::Done,
            actions: Vec::new(),
            outcomes: Vec::new(),
            error: None,
            depth: event.depth,
        };
        let decided = |run: Run| Decided {
            rule: rule.name.clone(),
            run,
            acts: Vec::new(),
            webhooks: Vec::new(),
            timer: None,
        };
        if event.depth >= rule.max_depth {
            run.status = RunStatus::Failed;
            run.error = Some(format!(
                "chain stopped: this change is the result of {} workflow writes in a row, and the rule's max_depth is {} (a rule that triggers itself through another would loop)",
                event.depth, rule.max_depth
            ));
            tracing::error!(rule = %rule.name, record = %event.record, depth = event.depth, "workflow chain stopped at its depth bound");
            return Some(decided(run));
        }
        let timer = || Timer {
            rule: rule.name.clone(),
            seq,
            event: event.clone(),
        };
        if let Some(after) = rule.after.filter(|_| !due) {
            let due_us = event.at.saturating_add(micros(after));
            run.status = RunStatus::Scheduled;
            run.actions = vec![format!("runs at {}", show_time(due_us))];
            let mut d = decided(run);
            d.timer = Some((due_us, timer()));
            return Some(d);
        }
        if let Some(wait) = self.over_cap(rule) {
            let due_us = self.engine.now().saturating_add(micros(wait));
            run.status = RunStatus::Scheduled;
            run.actions = vec![format!(
                "put off to {}: max_runs_per_minute ({}) reached",
                show_time(due_us),
                rule.max_runs_per_minute
            )];
            let mut d = decided(run);
            d.timer = Some((due_us, timer()));
            return Some(d);
        }
        let rec = match self.engine.record(event.record) {
            Ok(Some(r)) if r.merged_into.is_none() => r,
            Ok(Some(r)) => match r.merged_into.map(|id| self.engine.record(id)) {
                Some(Ok(Some(r))) => r,
                _ => return None,
            },
            Ok(None) => return None,
            Err(e) => {
                run.status = RunStatus::Failed;
                run.error = Some(e.to_string());
                return Some(decided(run));
            }
        };
        let ctx = eval::context(&self.engine, event, &rec, seq);
        let planned = eval::condition(&self.env, rule, &ctx).and_then(|holds| {
            holds
                .then(|| eval::plan(&self.engine, &self.env, rule, &rec, &ctx))
                .transpose()
        });
        match planned {
            Ok(None) => None,
            Ok(Some(plan)) => {
                run.actions = plan.described;
                let mut d = decided(run);
                d.acts = plan.acts;
                d.webhooks = plan.webhooks;
                Some(d)
            }
            Err(e) => {
                tracing::warn!(rule = %rule.name, record = %rec.id, error = %e, "workflow run failed");
                run.status = RunStatus::Failed;
                run.error = Some(e);
                Some(decided(run))
            }
        }
    }

    /// How long until the rule may run again, if its cap is reached; else counts this run.
    fn over_cap(&self, rule: &Rule) -> Option<Duration> {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let q = recent.entry(rule.name.clone()).or_default();
        let now = Instant::now();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            q.pop_front();
        }
        if q.len() >= rule.max_runs_per_minute as usize {
            let oldest = q.front().copied().unwrap_or(now);
            return Some(Duration::from_secs(60).saturating_sub(now.duration_since(oldest)));
        }
        q.push_back(now);
        None
    }

    /// One write: the runs' acts, their run records, timers and webhooks, and the
    /// consumed event or timer. A write the engine refuses is retried without the acts,
    /// the runs recorded as failed, so one bad act cannot stop the queue.
    fn commit(
        &self,
        event: &Event,
        consumed: (Table, Vec<u8>),
        decided: Vec<Decided>,
    ) -> Result<(), EngineError> {
        let acts: Vec<(Act, String)> = decided
            .iter()
            .flat_map(|d| {
                d.acts
                    .iter()
                    .map(|a| (a.clone(), super::rules::source_of(&d.rule)))
            })
            .collect();
        let depth = event.depth.saturating_add(1);
        // The crash tests' two moments: the runs decided and nothing written, and all of
        // it written with nothing pushed yet.
        #[cfg(feature = "failpoints")]
        for d in &decided {
            crate::engine::crash_at("workflow-act", &d.rule);
        }
        let result = self
            .engine
            .act(depth, &acts, std::slice::from_ref(&consumed), |outcomes| {
                self.notes(&decided, outcomes, None)
            });
        let applied = result.is_ok();
        #[cfg(feature = "failpoints")]
        for d in decided.iter().filter(|_| applied) {
            crate::engine::crash_at("workflow-acted", &d.rule);
        }
        match result {
            Ok(_) => {}
            Err(EngineError::Store(e)) => return Err(EngineError::Store(e)),
            Err(e) if !acts.is_empty() => {
                let error = e.to_string();
                tracing::error!(error = %error, record = %event.record, "workflow actions refused; the runs are recorded as failed");
                self.engine
                    .act(0, &[], std::slice::from_ref(&consumed), |_| {
                        self.notes(&decided, &[], Some(&error))
                    })?;
            }
            Err(e) => return Err(e),
        }
        for d in &decided {
            let Some(s) = self.stats.get(&d.rule) else {
                continue;
            };
            match (d.run.status, applied) {
                (RunStatus::Scheduled, true) => s.scheduled.fetch_add(1, Ordering::Relaxed),
                (RunStatus::Done, true) => {
                    s.actions
                        .fetch_add((d.acts.len() + d.webhooks.len()) as u64, Ordering::Relaxed);
                    s.runs.fetch_add(1, Ordering::Relaxed)
                }
                _ => s.failures.fetch_add(1, Ordering::Relaxed),
            };
        }
        Ok(())
    }

    fn notes(
        &self,
        decided: &[Decided],
        outcomes: &[ActOutcome],
        refused: Option<&str>,
    ) -> Vec<(Table, Vec<u8>, Vec<u8>)> {
        let mut notes = Vec::new();
        let mut next = 0;
        for (n, d) in decided.iter().enumerate() {
            let mut run = d.run.clone();
            let end = next + d.acts.len();
            run.outcomes = outcomes.get(next..end).unwrap_or_default().to_vec();
            next = end;
            if let Some(e) = refused.filter(|_| !d.acts.is_empty()) {
                run.status = RunStatus::Failed;
                run.error = Some(e.to_owned());
            }
            let n = u8::try_from(n).unwrap_or(u8::MAX);
            notes.push((
                Table::Workflows,
                keys::run(&d.rule, run.at, run.event, n),
                serde_json::to_vec(&run).unwrap_or_default(),
            ));
            if let Some((due, timer)) = &d.timer {
                notes.push((
                    Table::Workflows,
                    keys::timer(*due, timer.seq, &timer.rule),
                    serde_json::to_vec(timer).unwrap_or_default(),
                ));
            }
            if run.status == RunStatus::Done {
                for (i, call) in d.webhooks.iter().enumerate() {
                    let job = WebhookJob {
                        rule: d.rule.clone(),
                        record: run.record,
                        event: run.event,
                        key: format!("{}:{}:{i}", d.rule, run.event),
                        call: call.clone(),
                        attempts: 0,
                        not_before: 0,
                        last_error: None,
                    };
                    notes.push((
                        Table::Workflows,
                        keys::webhook(run.event, &d.rule, i, run.record),
                        serde_json::to_vec(&job).unwrap_or_default(),
                    ));
                }
            }
        }
        notes
    }

    /// `workflows test`: what `rule` would do for the record as it is now, as if its
    /// trigger had just fired; nothing is written.
    pub fn dry_run(&self, rule: &str, record: Uuid) -> Result<DryRun, String> {
        let rule = self
            .rules
            .get(rule)
            .ok_or_else(|| format!("no workflow rule `{rule}`"))?;
        let rec = self
            .engine
            .record(record)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no record {record}"))?;
        if rec.kind != rule.trigger.kind() {
            return Err(format!(
                "rule `{}` runs on {} records; {record} is a {}",
                rule.name,
                rule.trigger.kind(),
                rec.kind
            ));
        }
        let changes = match &rule.trigger {
            super::rules::Trigger::Changed { field, .. } => rec
                .fields
                .get(field)
                .map(|e| crate::engine::FieldChange {
                    field: field.clone(),
                    from: revsync_sdk::Value::Null,
                    to: e.value.clone(),
                    by: e.from.connector.clone(),
                })
                .into_iter()
                .collect(),
            super::rules::Trigger::Created(_) => Vec::new(),
        };
        let event = Event {
            record: rec.id,
            kind: rec.kind,
            at: self.engine.now(),
            created: matches!(rule.trigger, super::rules::Trigger::Created(_)),
            changes,
            depth: 0,
            backfill: false,
        };
        let ctx = eval::context(&self.engine, &event, &rec, 0);
        let holds = eval::condition(&self.env, rule, &ctx)?;
        let actions = if holds {
            eval::plan(&self.engine, &self.env, rule, &rec, &ctx)?.described
        } else {
            Vec::new()
        };
        Ok(DryRun {
            rule: rule.name.clone(),
            record: rec.id,
            trigger: rule.trigger.describe(),
            when: rule.when.clone(),
            condition_holds: holds,
            after: rule.after.map(|d| format!("{}s", d.as_secs())),
            actions,
        })
    }

    /// Deliver the webhooks that are due; how many were attempted.
    pub async fn send_webhooks(&self, client: &reqwest::Client) -> Result<usize, EngineError> {
        let now = self.engine.now();
        let due: Vec<(Vec<u8>, WebhookJob)> = self
            .store()
            .scan(Table::Workflows, keys::WEBHOOKS, None, BATCH)?
            .into_iter()
            .filter_map(|(k, v)| serde_json::from_slice(&v).ok().map(|j| (k, j)))
            .filter(|(_, j): &(Vec<u8>, WebhookJob)| j.not_before <= now)
            .collect();
        let n = due.len();
        for (key, mut job) in due {
            let outcome = super::webhook::deliver(client, &job, now).await;
            let mut batch = crate::store::WriteBatch::new();
            match outcome {
                Ok(()) => {
                    if let Some(s) = self.stats.get(&job.rule) {
                        s.webhooks_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    batch.delete(Table::Workflows, key);
                }
                Err(super::webhook::Failure::Retry(e))
                    if job.attempts + 1 < super::webhook::ATTEMPTS =>
                {
                    job.attempts += 1;
                    job.not_before =
                        now.saturating_add(micros(super::webhook::delay(job.attempts)));
                    tracing::warn!(rule = %job.rule, url = %job.call.url, attempt = job.attempts, error = %e, "workflow webhook failed; retrying later");
                    job.last_error = Some(e);
                    batch.put(
                        Table::Workflows,
                        key,
                        serde_json::to_vec(&job).unwrap_or_default(),
                    );
                }
                Err(super::webhook::Failure::Retry(e) | super::webhook::Failure::Refused(e)) => {
                    tracing::error!(rule = %job.rule, url = %job.call.url, error = %e, "workflow webhook dead-lettered");
                    if let Some(s) = self.stats.get(&job.rule) {
                        s.failures.fetch_add(1, Ordering::Relaxed);
                    }
                    let run = Run {
                        rule: job.rule.clone(),
                        at: now,
                        event: job.event,
                        record: job.record,
                        status: RunStatus::Failed,
                        actions: vec![format!("POST {}", job.call.url)],
                        outcomes: Vec::new(),
                        error: Some(format!(
                            "webhook not delivered after {} attempts: {e}",
                            job.attempts + 1
                        )),
                        depth: 0,
                    };
                    batch.delete(Table::Workflows, key);
                    batch.put(
                        Table::Workflows,
                        keys::run(&job.rule, now, job.event, u8::MAX),
                        serde_json::to_vec(&run).unwrap_or_default(),
                    );
                }
            }
            self.store().write(batch)?;
        }
        Ok(n)
    }

    /// The newest `limit` runs, of one rule or of all, newest first.
    pub fn runs(&self, rule: Option<&str>, limit: usize) -> Result<Vec<Run>, EngineError> {
        runs(self.store(), rule, limit)
    }

    /// Drop run records beyond [`RUNS_KEPT`] per rule.
    pub fn prune(&self) -> Result<usize, EngineError> {
        let mut dropped = 0;
        for rule in &self.rules.0 {
            let prefix = keys::runs_of(&rule.name);
            let mut keys = Vec::new();
            for page in crate::store::scan_pages(self.store(), Table::Workflows, &prefix, 1_000) {
                keys.extend(page?.into_iter().map(|(k, _)| k));
            }
            let extra = keys.len().saturating_sub(RUNS_KEPT);
            if extra > 0 {
                let mut batch = crate::store::WriteBatch::new();
                for k in keys.into_iter().take(extra) {
                    batch.delete(Table::Workflows, k);
                }
                self.store().write(batch)?;
                dropped += extra;
            }
        }
        Ok(dropped)
    }

    /// Until `cancel`: run events as they come, timers as they fall due, webhooks.
    pub async fn run(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        let signal = self.engine.events_signal();
        let client = super::webhook::client();
        let mut last_prune = Instant::now();
        loop {
            let notified = signal.notified();
            let me = self.clone();
            let stepped = tokio::task::spawn_blocking(move || me.step()).await;
            let busy = match stepped {
                Ok(Ok(n)) => n > 0,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "workflow runner could not write; retrying in 5s");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "workflow step panicked");
                    false
                }
            };
            if let Err(e) = self.send_webhooks(&client).await {
                tracing::error!(error = %e, "workflow webhooks could not be read or written");
            }
            if last_prune.elapsed() > Duration::from_secs(60) {
                last_prune = Instant::now();
                let me = self.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || me.prune()).await {
                    tracing::warn!(error = %e, "workflow runs could not be pruned");
                }
            }
            if busy {
                continue;
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = notified => {}
                // Timers and webhook retries fall due without an event to wake us.
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// The newest `limit` runs in the store, of one rule or of all, newest first.
pub fn runs(store: &dyn Store, rule: Option<&str>, limit: usize) -> Result<Vec<Run>, EngineError> {
    let prefix = match rule {
        Some(r) => keys::runs_of(r),
        None => b"r\0".to_vec(),
    };
    let mut out = Vec::new();
    for page in crate::store::scan_pages(store, Table::Workflows, &prefix, 1_000) {
        for (_, v) in page? {
            if let Ok(run) = serde_json::from_slice::<Run>(&v) {
                out.push(run);
            }
        }
    }
    out.sort_by(|a, b| b.at.cmp(&a.at).then(b.event.cmp(&a.event)));
    out.truncate(limit);
    Ok(out)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DryRun {
    pub rule: String,
    pub record: Uuid,
    pub trigger: String,
    pub when: Option<String>,
    pub condition_holds: bool,
    pub after: Option<String>,
    pub actions: Vec<String>,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn show_time(us: i64) -> String {
    revsync_sdk::Value::Time(us)
        .to_json()
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
