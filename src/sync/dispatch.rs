//! The push dispatcher of one connector: drains its outbox in order, coalesces entries
//! for the same record (the latest state wins), batches, pushes, and only then marks
//! each record as held by the system — per item, from the system's own answer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use revsync_sdk::{Connector, ConnectorError, Kind, LimitScope, PushItem, PushOp};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::engine::codec::{self, DeadLetter, OutboxEntry, PushOp as QueuedOp};
use crate::engine::{Engine, EngineError, Page};
use crate::status::{ConnectorState, StatusHub};

mod dry_run;

/// How many outbox entries one round looks at, in batches.
const ROUND_BATCHES: usize = 8;

/// Most pushes of one connector in flight at once, whatever it declares.
const MAX_IN_FLIGHT: usize = 64;

/// How long a pass that could only hold creates waits before the next.
const HELD_WAIT: Duration = Duration::from_secs(5);

pub struct Dispatcher {
    pub connector_id: String,
    pub connector: Arc<dyn Connector>,
    pub engine: Arc<Engine>,
    pub status: Arc<StatusHub>,
    pub cancel: CancellationToken,
    /// Objects this connector also reads: pushes wait until each was read to its end in this run.
    pub gated: std::collections::HashSet<String>,
    /// Which of those objects were read to their end since this process started.
    pub caught_up: Arc<CaughtUp>,
    /// Every object any connector reads: creates of a kind wait for the first read of
    /// every object of that kind.
    pub first_reads: Arc<FirstReads>,
    /// Where the next round's outbox window starts. A pass walks the whole outbox window
    /// by window, so entries behind held creates or behind entries backing off (a few
    /// hundred poison items at the head) still go out; it starts over at the end.
    pub resume_after: std::sync::Mutex<Option<u64>>,
    /// What the current pass has seen so far.
    pub pass: std::sync::Mutex<Pass>,
    /// How often one failing item is tried before it is dead-lettered.
    pub retry: super::retry::RetryPolicy,
    /// The connector's `dry_run`: nothing is sent; entries wait in the outbox and
    /// `/status` lists them ([`dry_run`]).
    pub dry_run: bool,
    pub pauses: Arc<super::pause::Pauses>,
}

/// What one pass over the whole outbox achieved, window by window.
#[derive(Debug, Default)]
pub struct Pass {
    /// Something was pushed, acknowledged or dead-lettered.
    progress: bool,
    /// Creates were held back for a first read somewhere.
    held: bool,
    /// The soonest `not_before` among the entries skipped, over every window of the pass.
    next_due: Option<i64>,
}

/// Every (connector, object) the daemon reads, with its kind, known once all connectors
/// have started. Until each object of a kind was read to its end once (ever: the marker is
/// stored), no connector creates records of that kind. A copy in one system may name, or
/// be, a copy in another system that is not read yet (a Stripe customer whose metadata
/// names a HubSpot company): created earlier, it would be created twice. Identity only
/// ever joins records of one kind, so a first read that never ends holds back its own
/// kind, not every create everywhere. Updates and deletes are not held.
#[derive(Debug, Default)]
pub struct FirstReads {
    objects: std::sync::OnceLock<Vec<(String, String, Kind)>>,
    done: std::sync::atomic::AtomicBool,
}

/// What creates still wait for: per kind, the first object of that kind not read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unread {
    /// Connectors are still starting: which objects exist is not known yet.
    Starting,
    Objects(BTreeMap<Kind, String>),
}

impl Unread {
    pub fn is_empty(&self) -> bool {
        matches!(self, Unread::Objects(m) if m.is_empty())
    }

    /// The object (`connector/object`) a create of a `kind` record waits for, if any.
    pub fn holds(&self, kind: Option<Kind>) -> Option<&str> {
        match (self, kind) {
            (Unread::Starting, _) => Some("every connector, starting"),
            (Unread::Objects(m), Some(k)) => m.get(&k).map(String::as_str),
            // A record gone since it was queued: nothing will be built for it anyway.
            (Unread::Objects(m), None) => m.values().next().map(String::as_str),
        }
    }
}

impl FirstReads {
    pub fn set(&self, objects: Vec<(String, String, Kind)>) {
        let _ = self.objects.set(objects);
    }

    pub fn pending(&self, engine: &Engine) -> Result<Unread, EngineError> {
        use std::sync::atomic::Ordering;
        if self.done.load(Ordering::Relaxed) {
            return Ok(Unread::Objects(BTreeMap::new()));
        }
        let Some(objects) = self.objects.get() else {
            return Ok(Unread::Starting);
        };
        let unread = first_unread(objects, |c, o| engine.backfilled(c, o))?;
        if unread.is_empty() {
            self.done.store(true, Ordering::Relaxed);
        }
        Ok(unread)
    }
}

/// Per kind, the first of `objects` that `backfilled` says was never read to its end.
fn first_unread(
    objects: &[(String, String, Kind)],
    backfilled: impl Fn(&str, &str) -> Result<bool, EngineError>,
) -> Result<Unread, EngineError> {
    let mut by_kind = BTreeMap::new();
    for (c, o, kind) in objects {
        if !by_kind.contains_key(kind) && !backfilled(c, o)? {
            by_kind.insert(*kind, format!("{c}/{o}"));
        }
    }
    Ok(Unread::Objects(by_kind))
}

/// Objects of one connector read to their end since this process started. Until all are,
/// nothing is pushed there: edits made in that system while the daemon was down must be
/// read (and win or lose by policy) before revsync writes over them. An object whose read
/// reached the end but whose system still holds its newest changes back (Zendesk's
/// exports keep the last minute) is `behind`: updates may go (each is read by id first),
/// creates there wait unless the create itself finds an existing copy.
#[derive(Debug, Default)]
pub struct CaughtUp(std::sync::Mutex<std::collections::HashMap<String, bool>>);

impl CaughtUp {
    /// A read of `object` reached the end; `behind`: changes are still held back.
    pub fn mark(&self, object: &str, behind: bool) {
        let mut read = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Once served in full, an object stays so: later answers only bring newer changes.
        let was = read.get(object).copied().unwrap_or(true);
        read.insert(object.to_owned(), was && behind);
    }

    pub fn all(&self, objects: &std::collections::HashSet<String>) -> bool {
        let read = self.0.lock().unwrap_or_else(|e| e.into_inner());
        objects.iter().all(|o| read.contains_key(o))
    }

    /// Whether `object` was read to the end with changes still held back.
    pub fn behind(&self, object: &str) -> bool {
        let read = self.0.lock().unwrap_or_else(|e| e.into_inner());
        read.get(object).copied().unwrap_or(false)
    }
}

/// A pending entry made ready to send: the record, one item per copy in the object, the
/// projection's hash, and whether the system already holds it (nothing to send).
type Built = (Uuid, Vec<PushItem>, codec::Hash, bool);

/// Entries for one (record, object, operation), coalesced: pushed once, acked together.
struct Pending {
    seqs: Vec<u64>,
    latest: (u64, OutboxEntry),
}

/// What one batch achieved.
enum Pushed {
    /// Sent, acknowledged or dropped entries (or had none).
    Progress,
    /// Every entry was a create held until every system's first read.
    AllHeld,
    /// The connector must stop pushing for a while.
    Blocked(Duration),
}

/// One try at a batch: done, or its entries to build again because the read before the
/// push applied edits to their records.
enum Attempt {
    Done(Pushed),
    Rebuild(Vec<Pending>),
}

/// The batches of one round in flight, and what those finished achieved.
#[derive(Default)]
struct Flight {
    running: JoinSet<Result<Pushed, EngineError>>,
    /// Per batch in flight, its records.
    busy: HashMap<tokio::task::Id, Vec<Uuid>>,
    blocked: Option<Duration>,
    error: Option<EngineError>,
}

impl Flight {
    fn holds(&self, records: &[Uuid]) -> bool {
        self.busy.values().flatten().any(|r| records.contains(r))
    }

    /// Wait for one batch in flight to finish and take in what it achieved.
    async fn land(&mut self, dispatcher: &Dispatcher) {
        let outcome = match self.running.join_next_with_id().await {
            None => return,
            Some(Ok((id, outcome))) => {
                self.busy.remove(&id);
                outcome
            }
            Some(Err(e)) => {
                self.busy.remove(&e.id());
                Err(EngineError::Corrupt {
                    table: "task",
                    detail: e.to_string(),
                })
            }
        };
        match outcome {
            Ok(Pushed::Blocked(wait)) => {
                self.blocked = Some(self.blocked.map_or(wait, |b| b.max(wait)))
            }
            Ok(Pushed::Progress) => dispatcher.note_pass(|p| p.progress = true),
            Ok(Pushed::AllHeld) => dispatcher.note_pass(|p| p.held = true),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }
}

/// What one round achieved, to decide how long to wait.
enum Round {
    Idle(Option<i64>),
    Worked,
    Blocked(Duration),
}

impl Dispatcher {
    pub async fn run(self: Arc<Self>) {
        if self.dry_run {
            // Nothing is pushed or acknowledged: turned off, every held write goes out.
            return self.preview().await;
        }
        let signal = self.engine.outbox_signal();
        loop {
            if !self
                .pauses
                .wait(&self.connector_id, &self.status, &self.cancel)
                .await
            {
                return;
            }
            let notified = signal.notified();
            let wait = match self.round().await {
                Ok(Round::Worked) if self.cancel.is_cancelled() => return,
                Ok(Round::Worked) => continue,
                Ok(Round::Idle(next)) => next.map_or(Duration::from_secs(5), |at| self.until(at)),
                // Paused (auth, daily quota): new work must not wake it before the time.
                Ok(Round::Blocked(d)) => {
                    tokio::select! {
                        _ = self.cancel.cancelled() => return,
                        _ = tokio::time::sleep(d) => {}
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(connector = %self.connector_id, error = %e, "dispatcher failed to read its outbox");
                    Duration::from_secs(5)
                }
            };
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = notified => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || f(&engine))
            .await
            .unwrap_or_else(|e| {
                Err(EngineError::Corrupt {
                    table: "task",
                    detail: e.to_string(),
                })
            })
    }

    async fn round(self: &Arc<Self>) -> Result<Round, EngineError> {
        let batch = self.connector.capabilities().batch_size.max(1);
        let in_flight = self.connector.pushes_in_flight().clamp(1, MAX_IN_FLIGHT);
        let conn = self.connector_id.clone();
        // Pushes in flight only overlap inside a round: a window of a few batches per
        // push slot keeps them overlapping for most of it, not just its first batches.
        let limit = batch
            .saturating_mul(ROUND_BATCHES)
            .saturating_mul(in_flight);
        let first_reads = self.first_reads.clone();
        // Objects not read to their end yet: while there are any, creates of their kinds
        // are held.
        let unread = self.blocking(move |e| first_reads.pending(e)).await?;
        let after = *self.resume_after.lock().unwrap_or_else(|e| e.into_inner());
        let entries = self
            .blocking(move |e| e.outbox_after(&conn, after, limit))
            .await?;
        // The window reached the end of the outbox: the next one starts over.
        let wrapped = entries.len() < limit;
        *self.resume_after.lock().unwrap_or_else(|e| e.into_inner()) = match entries.last() {
            Some((seq, _)) if !wrapped => Some(*seq),
            _ => None,
        };
        let (pending, order, next_due) = due_entries(entries, self.engine.now());
        self.note_pass(|p| {
            p.next_due = earliest(p.next_due, next_due);
        });
        let mut by_object: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
        let mut pending = pending;
        for key in order {
            if let Some(p) = pending.remove(&key) {
                by_object.entry(key.1.clone()).or_default().push(p);
            }
        }
        let mut chunks = Vec::new();
        for (object, items) in by_object {
            let mut items = items.into_iter().peekable();
            while items.peek().is_some() {
                chunks.push((object.clone(), items.by_ref().take(batch).collect()));
            }
        }
        if let Some(wait) = self.push_chunks(chunks, in_flight, unread).await? {
            // This window comes again once the pause is over.
            *self.resume_after.lock().unwrap_or_else(|e| e.into_inner()) = after;
            return Ok(Round::Blocked(wait));
        }
        if !wrapped {
            return Ok(Round::Worked);
        }
        // The end of a pass: go again at once if it achieved anything; otherwise wait for
        // the soonest entry skipped in any window, or new work.
        let pass = std::mem::take(&mut *self.pass.lock().unwrap_or_else(|e| e.into_inner()));
        Ok(match pass {
            Pass { progress: true, .. } => Round::Worked,
            // Held creates would be looked at again on every new entry: wait instead.
            Pass {
                held: true,
                next_due,
                ..
            } => {
                let wait = next_due.map_or(HELD_WAIT, |at| self.until(at).min(HELD_WAIT));
                Round::Blocked(wait)
            }
            Pass { next_due, .. } => Round::Idle(next_due),
        })
    }

    /// Push a round's batches in order, up to `in_flight` at once; a batch holding a
    /// record that a batch in flight also holds waits for it, so one record's entries
    /// still go out in outbox order. `Some(wait)`: the connector must stop pushing (every
    /// batch already sent is finished and recorded first).
    async fn push_chunks(
        self: &Arc<Self>,
        chunks: Vec<(String, Vec<Pending>)>,
        in_flight: usize,
        unread: Unread,
    ) -> Result<Option<Duration>, EngineError> {
        let unread = Arc::new(unread);
        let mut flight = Flight::default();
        for (object, chunk) in chunks {
            let records: Vec<Uuid> = chunk.iter().map(|p| p.latest.1.record).collect();
            while flight.running.len() >= in_flight || flight.holds(&records) {
                flight.land(self).await;
            }
            if flight.blocked.is_some() || flight.error.is_some() {
                break;
            }
            let (this, unread) = (self.clone(), unread.clone());
            let task = flight
                .running
                .spawn(async move { this.push_batch(&object, chunk, &unread).await });
            flight.busy.insert(task.id(), records);
        }
        // Nothing more to start: what is in flight finishes and is recorded.
        while !flight.running.is_empty() {
            flight.land(self).await;
        }
        match flight.error {
            Some(e) => Err(e),
            None => Ok(flight.blocked),
        }
    }

    fn note_pass(&self, f: impl FnOnce(&mut Pass)) {
        f(&mut self.pass.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// How long until the store time `at`, at most a minute.
    fn until(&self, at: i64) -> Duration {
        let micros = at.saturating_sub(self.engine.now()).clamp(0, 60_000_000);
        Duration::from_micros(u64::try_from(micros).unwrap_or(0))
    }

    /// Push one batch: what it achieved, or how long the connector must stop pushing.
    async fn push_batch(
        &self,
        object: &str,
        chunk: Vec<Pending>,
        unread: &Unread,
    ) -> Result<Pushed, EngineError> {
        // Read the copies first only where a read can tell an edit from our own write: the
        // object is read at all (not `direction: out`), and the system's reads by id carry
        // each copy's own modification time (Stripe's objects have none: a read stamped
        // "now" would beat every newer value revsync holds).
        let read_first =
            self.gated.contains(object) && self.connector.reads_by_id_carry_modified_times();
        match self.push_attempt(object, chunk, unread, read_first).await? {
            Attempt::Done(pushed) => Ok(pushed),
            // The read brought edits, now applied: build the items again from the merged
            // records and push them in this same round, without a second read.
            Attempt::Rebuild(chunk) => match self.push_attempt(object, chunk, unread, false).await?
            {
                Attempt::Done(pushed) => Ok(pushed),
                Attempt::Rebuild(_) => unreachable!("no read, so nothing to rebuild for"),
            },
        }
    }

    async fn push_attempt(
        &self,
        object: &str,
        chunk: Vec<Pending>,
        unread: &Unread,
        read_first: bool,
    ) -> Result<Attempt, EngineError> {
        let catching_up = "pushes wait for this run's first read of every object";
        if !self.caught_up.all(&self.gated) {
            let conn = self.connector_id.clone();
            self.status
                .update(&conn, |s| s.note = Some(catching_up.to_owned()));
            return Ok(Attempt::Done(Pushed::Blocked(Duration::from_millis(500))));
        }
        self.status.update(&self.connector_id, |s| {
            if s.note.as_deref() == Some(catching_up) {
                s.note = None;
            }
        });
        // Until every copy of a kind is linked (the first complete read of each object of
        // that kind, in every system), a create of that kind could duplicate one of them:
        // hold those creates, let updates and deletes through. A person may already be a
        // Salesforce Lead while revsync would create a Contact, and a Stripe customer may
        // name a HubSpot company not read yet.
        // A system still holding its newest changes back may hold a copy not served yet:
        // creates there wait too, unless the create itself finds that copy.
        let behind =
            self.caught_up.behind(object) && !self.connector.creates_match_existing(object);
        let mut waiting_for: Option<String> = None;
        let (chunk, held): (Vec<Pending>, Vec<Pending>) = if unread.is_empty() && !behind {
            (chunk, Vec::new())
        } else {
            let mut keep = Vec::new();
            let mut held = Vec::new();
            for p in chunk {
                let (c, o, rec) = (
                    self.connector_id.clone(),
                    object.to_owned(),
                    p.latest.1.record,
                );
                // `Some(kind)` when this entry would create the copy: the record has none here.
                let creates = if matches!(p.latest.1.op, QueuedOp::Upsert) {
                    self.blocking(move |e| {
                        Ok(match e.find(&rec.to_string())? {
                            Some(r) => r.link(&c, &o).is_none().then_some(Some(r.kind)),
                            None => Some(None),
                        })
                    })
                    .await?
                } else {
                    None
                };
                let unread_here = creates.and_then(|kind| unread.holds(kind));
                match (unread_here, creates.is_some() && behind) {
                    (Some(first), _) => {
                        waiting_for.get_or_insert_with(|| first.to_owned());
                        held.push(p)
                    }
                    (None, true) => {
                        waiting_for.get_or_insert_with(|| {
                            format!("{}/{object} (changes held back)", self.connector_id)
                        });
                        held.push(p)
                    }
                    (None, false) => keep.push(p),
                }
            }
            (keep, held)
        };
        const WAITING: &str = "creates wait for the first complete read of ";
        let waiting = format!("{WAITING}{}", waiting_for.unwrap_or_default());
        let conn = self.connector_id.clone();
        if held.is_empty() {
            self.status.update(&conn, |s| {
                if s.note.as_deref().is_some_and(|n| n.starts_with(WAITING)) {
                    s.note = None;
                }
            });
        } else {
            self.status
                .update(&conn, |s| s.note = Some(waiting.clone()));
        }
        if chunk.is_empty() {
            return Ok(Attempt::Done(if held.is_empty() {
                Pushed::Progress
            } else {
                Pushed::AllHeld
            }));
        }

        let conn = self.connector_id.clone();
        // Build each item from the record as it is now (latest state wins).
        // A record may have several copies in one object (a rep's duplicates that the same
        // email tied together): every copy is told, so none of them stays stale.
        let mut sendable: Vec<(Pending, Uuid, Vec<PushItem>, codec::Hash)> = Vec::new();
        for p in chunk {
            let (c, o, entry) = (conn.clone(), object.to_owned(), p.latest.1.clone());
            let built = self.blocking(move |e| build(e, &c, &o, &entry)).await?;
            match built {
                // The record is gone (it cannot be: records are never erased) or unmapped: drop.
                None => {
                    let (c, seqs) = (conn.clone(), p.seqs.clone());
                    let o = object.to_owned();
                    let rec = p.latest.1.record;
                    self.blocking(move |e| e.confirm_push(&c, &seqs, rec, &o, [0; 16], None))
                        .await?;
                }
                // Already held by the system: acknowledge without a call.
                Some((rec, _, hash, true)) => {
                    let (c, seqs, o) = (conn.clone(), p.seqs.clone(), object.to_owned());
                    self.blocking(move |e| e.confirm_push(&c, &seqs, rec, &o, hash, None))
                        .await?;
                }
                Some((rec, items, hash, false)) => {
                    // Two upserts of one record (one queued before a merge absorbed its
                    // record): one push, acknowledged for both, never two creates. Deletes
                    // each name their own copy and are never folded.
                    let is_upsert = |items: &[PushItem]| {
                        !items.iter().any(|i| matches!(i.op, PushOp::Delete { .. }))
                    };
                    let twin = sendable
                        .iter_mut()
                        .find(|s| s.1 == rec && is_upsert(&s.2) && is_upsert(&items));
                    match twin {
                        Some(t) => t.0.seqs.extend(p.seqs),
                        None => sendable.push((p, rec, items, hash)),
                    }
                }
            }
        }
        if sendable.is_empty() {
            return Ok(Attempt::Done(Pushed::Progress));
        }
        // An edit made in this system since revsync last read it would be written over by
        // these updates, with no audit entry anywhere. Read the copies first and apply
        // what changed: if anything did, the items are built again from the merged records
        // (which may keep the edit, lose it to a newer value with an audit entry, or now
        // need no push).
        let updated: Vec<String> = if read_first {
            sendable
                .iter()
                .flat_map(|s| &s.2)
                .filter_map(|i| match &i.op {
                    PushOp::Update { external_id } => Some(external_id.clone()),
                    _ => None,
                })
                .collect()
        } else {
            Vec::new()
        };
        if !updated.is_empty() {
            let read = self.connector.fetch_by_ids(object, &updated);
            match revsync_sdk::Shutdown::new(self.cancel.clone())
                .read(read)
                .await
            {
                // Nothing was sent: the batch stays queued for the next run.
                Err(ConnectorError::Cancelled) => {
                    return Ok(Attempt::Done(Pushed::Blocked(Duration::ZERO)))
                }
                Ok(changes) if changes.is_empty() => {}
                Ok(changes) => {
                    let (c, page) = (
                        conn.clone(),
                        Page {
                            object: object.to_owned(),
                            changes,
                            // A read by id says nothing about where polling stands.
                            cursor: None,
                        },
                    );
                    let report = self.blocking(move |e| e.apply(&c, page)).await?;
                    let news = report.created + report.updated + report.merged + report.deleted;
                    if news > 0 {
                        tracing::info!(connector = %conn, object, edits = news, "edits made in the target since its last read were applied before pushing over them");
                        self.status
                            .update(&conn, |s| s.edits_read_before_push += news as u64);
                        return Ok(Attempt::Rebuild(
                            sendable.into_iter().map(|s| s.0).collect(),
                        ));
                    }
                }
                // The updates wait like a failed push: they would meet the same limit or
                // outage, and without the read they would go out blind over edits revsync
                // has not seen. A read refused for good (a changed API, a bug) waits too,
                // as retryable, so its attempt cap ends it as a dead letter naming the
                // read's error. Creates and deletes in the batch need no read and go on,
                // unless the connector must stop altogether.
                Err(err) => {
                    let err = match err {
                        e @ (ConnectorError::Transient(_)
                        | ConnectorError::RateLimited { .. }
                        | ConnectorError::Auth(_)) => e,
                        other => ConnectorError::Transient(format!(
                            "the read of the copies before updating them failed: {other}"
                        )),
                    };
                    let (updates, rest): (Vec<_>, Vec<_>) = sendable
                        .into_iter()
                        .partition(|s| s.2.iter().any(|i| matches!(i.op, PushOp::Update { .. })));
                    let mut blocked: Option<Duration> = None;
                    for (p, _, items, _) in updates {
                        let Some(item) = items.into_iter().next() else {
                            continue;
                        };
                        if let Some(wait) = self.failed(object, p, &item, err.clone()).await? {
                            blocked = Some(blocked.map_or(wait, |b| b.max(wait)));
                        }
                    }
                    if let Some(wait) = blocked {
                        return Ok(Attempt::Done(Pushed::Blocked(wait)));
                    }
                    sendable = rest;
                    if sendable.is_empty() {
                        return Ok(Attempt::Done(Pushed::Progress));
                    }
                }
            }
        }
        // What goes out is recorded first: the system may store it and be read back before
        // the confirmation below is recorded, or after a newer edit is queued; either read
        // must be known as our own write, not an edit newer than that one (ADR 0025).
        let sent: Vec<(Uuid, codec::Hash)> = sendable
            .iter()
            .filter(|s| s.2.iter().all(|i| !matches!(i.op, PushOp::Delete { .. })))
            .map(|s| (s.1, s.3))
            .collect();
        if !sent.is_empty() {
            let (c, o) = (conn.clone(), object.to_owned());
            self.blocking(move |e| e.mark_sent(&c, &o, &sent)).await?;
        }
        let items: Vec<PushItem> = sendable.iter().flat_map(|s| s.2.clone()).collect();
        let started = std::time::Instant::now();
        let outcome = self.connector.push(object, &items).await;
        tracing::debug!(connector = %conn, object, items = items.len(), elapsed_ms = started.elapsed().as_millis() as u64, ok = outcome.is_ok(), "push");
        let results: Vec<Result<String, ConnectorError>> = match outcome {
            Ok(r) if r.len() == items.len() => r,
            Ok(r) => {
                let msg = format!(
                    "connector returned {} results for {} items",
                    r.len(),
                    items.len()
                );
                vec![Err(ConnectorError::Transient(msg)); items.len()]
            }
            Err(e) => vec![Err(e); items.len()],
        };
        let mut blocked: Option<Duration> = None;
        let mut pushed = 0u64;
        // A store error while recording one answer does not stop the others: each answer
        // left unrecorded is a copy the system made that the next round would create again.
        let mut store_error: Option<EngineError> = None;
        let mut results = results.into_iter();
        for (p, rec, items, hash) in sendable {
            // One pending entry is done when every copy took it; a failure retries all of
            // them (an update sent twice is harmless).
            let mut outcome: Result<String, ConnectorError> = Ok(String::new());
            for r in results.by_ref().take(items.len()) {
                match (&outcome, r) {
                    (Ok(_), r) => outcome = r,
                    (Err(_), _) => {}
                }
            }
            let Some(item) = items.into_iter().next() else {
                continue;
            };
            match outcome {
                Ok(external_id) => {
                    let created = matches!(item.op, PushOp::Create { .. }).then_some(external_id);
                    let (c, o, seqs) = (conn.clone(), object.to_owned(), p.seqs.clone());
                    match self
                        .blocking(move |e| {
                            e.confirm_push(&c, &seqs, rec, &o, hash, created.as_deref())
                        })
                        .await
                    {
                        Ok(()) => pushed += 1,
                        Err(e) => {
                            tracing::error!(connector = %conn, object, record = %rec, error = %e, "could not record a confirmed push");
                            store_error.get_or_insert(e);
                        }
                    }
                }
                Err(err) => match self.failed(object, p, &item, err).await {
                    Ok(Some(wait)) => blocked = Some(blocked.map_or(wait, |b| b.max(wait))),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(connector = %conn, object, error = %e, "could not record a failed push");
                        store_error.get_or_insert(e);
                    }
                },
            }
        }
        if pushed > 0 {
            self.status.update(&conn, |s| {
                s.records_out += pushed;
                s.last_success_at = Some(chrono::Utc::now());
                // A push went through: whatever paused the connector is over.
                s.push_blocked = false;
                if matches!(
                    s.state,
                    ConnectorState::AuthFailed
                        | ConnectorState::BackingOff
                        | ConnectorState::Paused
                ) {
                    s.state = ConnectorState::Idle;
                }
            });
        }
        // A pause the system asked for (auth, daily quota) outlasts the store's retry.
        if let (Some(e), None) = (store_error, blocked) {
            return Err(e);
        }
        Ok(Attempt::Done(match blocked {
            Some(wait) => Pushed::Blocked(wait),
            None => Pushed::Progress,
        }))
    }

    /// Handle one failed item: retry later, pause the connector, or dead-letter it.
    async fn failed(
        &self,
        object: &str,
        p: Pending,
        item: &PushItem,
        err: ConnectorError,
    ) -> Result<Option<Duration>, EngineError> {
        let conn = self.connector_id.clone();
        let note = |state: ConnectorState, msg: String| {
            self.status.update(&conn, |s| {
                s.state = state;
                s.push_blocked =
                    matches!(state, ConnectorState::AuthFailed | ConnectorState::Paused);
                s.errors.count += 1;
                s.errors.last_message = Some(msg);
                s.errors.last_at = Some(chrono::Utc::now());
            });
        };
        match &err {
            // Shutdown stopped it before it was sent (or sent again): the entry stays as it
            // is, its attempts uncounted, and the round ends.
            ConnectorError::Cancelled => Ok(Some(Duration::ZERO)),
            // The whole connector waits; the entry stays as it is, nothing is dead-lettered.
            ConnectorError::Auth(m) => {
                note(ConnectorState::AuthFailed, format!("push to {object}: {m}"));
                tracing::error!(connector = %conn, object, error = %err, "authentication failed; pushes paused");
                Ok(Some(Duration::from_secs(60)))
            }
            ConnectorError::RateLimited {
                scope: scope @ (LimitScope::Daily | LimitScope::Reserve),
                retry_after,
            } => {
                let (state, why) = quota_state(*scope);
                note(state, format!("{why} pushing {object}"));
                Ok(Some(retry_after.unwrap_or(Duration::from_secs(3600))))
            }
            // A rate limit is the system's, not the item's: it waits as long as asked and
            // does not use up the item's attempts.
            ConnectorError::RateLimited { retry_after, .. } => {
                // A day at most: a garbled `Retry-After` must not park the item for ever.
                let wait = retry_after
                    .unwrap_or(self.retry.min_delay)
                    .min(Duration::from_secs(86_400));
                note(
                    ConnectorState::BackingOff,
                    format!("push to {object}: {err}"),
                );
                self.reschedule(p, wait, false).await?;
                Ok(None)
            }
            e if e.is_retryable() => {
                let failures = p.latest.1.attempts.saturating_add(1);
                match self.retry.after_failure(failures) {
                    Some(wait) => {
                        note(
                            ConnectorState::BackingOff,
                            format!("push to {object}: {err}"),
                        );
                        tracing::warn!(connector = %conn, object, error = %err, attempts = failures, retry_in_ms = wait.as_millis() as u64, "push failed; will retry");
                        self.reschedule(p, wait, true).await?;
                    }
                    None => {
                        let detail = format!("gave up after {failures} attempts: {err}");
                        tracing::warn!(connector = %conn, object, error = %err, attempts = failures, "push kept failing; moved to the dead-letter queue");
                        self.bury(object, p, item, &err, detail, None, None).await?;
                    }
                }
                Ok(None)
            }
            _ => {
                let (detail, status, body) = match &err {
                    ConnectorError::Permanent {
                        detail,
                        status,
                        body,
                    } => (detail.clone(), *status, body.clone()),
                    other => (other.to_string(), None, None),
                };
                tracing::warn!(connector = %conn, object, error = %err, "push refused; moved to the dead-letter queue");
                self.bury(object, p, item, &err, detail, status, body)
                    .await?;
                Ok(None)
            }
        }
    }

    /// Keep a failed entry in the outbox until `wait` from now, counting the failure
    /// against its attempts when `counted`.
    async fn reschedule(
        &self,
        p: Pending,
        wait: Duration,
        counted: bool,
    ) -> Result<(), EngineError> {
        let (seq, mut entry) = p.latest;
        let superseded = p.seqs;
        if counted {
            entry.attempts = entry.attempts.saturating_add(1);
        }
        entry.not_before = super::retry::at_after(self.engine.now(), wait);
        let c = self.connector_id.clone();
        self.blocking(move |e| e.reschedule(&c, seq, &entry, &superseded))
            .await
    }

    /// Move an entry (and those coalesced into it) to the dead-letter queue.
    #[allow(clippy::too_many_arguments)]
    async fn bury(
        &self,
        object: &str,
        p: Pending,
        item: &PushItem,
        err: &ConnectorError,
        detail: String,
        status: Option<u16>,
        response: Option<String>,
    ) -> Result<(), EngineError> {
        let conn = self.connector_id.clone();
        let mut entry = p.latest.1.clone();
        entry.attempts = entry.attempts.saturating_add(1);
        let letter = DeadLetter {
            entry,
            request: serde_json::to_string(&item.fields).unwrap_or_default(),
            class: err.class().to_owned(),
            detail,
            status,
            response,
            failed_ts: self.engine.now(),
        };
        self.status.update(&conn, |s| {
            s.dead_letters += 1;
            s.errors.count += 1;
            s.errors.last_message = Some(format!("push to {object} dead-lettered: {err}"));
            s.errors.last_at = Some(chrono::Utc::now());
        });
        let seqs = p.seqs;
        self.blocking(move |e| e.dead_letter(&conn, &seqs, &letter))
            .await
    }
}

/// How a quota answer shows on `/status`.
pub(super) fn quota_state(scope: LimitScope) -> (ConnectorState, &'static str) {
    match scope {
        LimitScope::Reserve => (ConnectorState::QuotaReserveReached, "quota reserve reached"),
        _ => (ConnectorState::Paused, "daily limit reached"),
    }
}

/// Record -> pending push key: deletes by the copy they name (a record can hold two
/// copies in one object, and each must go).
/// What pushing `entry` would send, built from its record as it is now (latest state
/// wins): one item per copy of the record in `object` (a rep's duplicates that one email
/// tied together are each told), or a create. `None`: the record is gone or not mapped
/// here; `held`: the system already holds this state, nothing to send.
fn build(e: &Engine, c: &str, o: &str, entry: &OutboxEntry) -> Result<Option<Built>, EngineError> {
    let Some(rec) = e.find(&entry.record.to_string())? else {
        return Ok(None);
    };
    if let QueuedOp::Delete { external_id } = &entry.op {
        let item = PushItem {
            op: PushOp::Delete {
                external_id: external_id.clone(),
            },
            fields: BTreeMap::new(),
            version: rec.version,
        };
        return Ok(Some((rec.id, vec![item], [0; 16], false)));
    }
    let Some((fields, hash)) = e.projection(c, o, &rec)? else {
        return Ok(None);
    };
    if e.held(c, o, rec.id)? == Some(hash) {
        return Ok(Some((rec.id, Vec::new(), hash, true)));
    }
    let mut ops: Vec<PushOp> = rec
        .links
        .iter()
        .filter(|l| l.connector == c && l.object == o)
        .map(|l| PushOp::Update {
            external_id: l.external_id.clone(),
        })
        .collect();
    if ops.is_empty() {
        ops.push(PushOp::Create {
            canonical_id: rec.id,
        });
    }
    let items = ops
        .into_iter()
        .map(|op| PushItem {
            op,
            fields: fields.clone(),
            version: rec.version,
        })
        .collect();
    Ok(Some((rec.id, items, hash, false)))
}

type PendingKey = (Uuid, String, Option<String>);

/// Entries for one record, object and operation are pushed as one (a delete names its copy).
fn pending_key(entry: &OutboxEntry) -> PendingKey {
    (
        entry.record,
        entry.object.clone(),
        match &entry.op {
            QueuedOp::Delete { external_id } => Some(external_id.clone()),
            _ => None,
        },
    )
}

/// The entries of a window that are due at `now`, coalesced by (record, object, op) in
/// outbox order, with that order, and the soonest `not_before` of those skipped.
fn due_entries(
    entries: Vec<(u64, OutboxEntry)>,
    now: i64,
) -> (BTreeMap<PendingKey, Pending>, Vec<PendingKey>, Option<i64>) {
    let mut next_due: Option<i64> = None;
    let mut pending: BTreeMap<PendingKey, Pending> = BTreeMap::new();
    let mut order: Vec<PendingKey> = Vec::new();
    for (seq, entry) in entries {
        if entry.not_before > now {
            next_due = earliest(next_due, Some(entry.not_before));
            continue;
        }
        let key = pending_key(&entry);
        match pending.get_mut(&key) {
            Some(p) => {
                p.seqs.push(seq);
                p.latest = (seq, entry);
            }
            None => {
                order.push(key.clone());
                pending.insert(
                    key,
                    Pending {
                        seqs: vec![seq],
                        latest: (seq, entry),
                    },
                );
            }
        }
    }
    (pending, order, next_due)
}

fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects() -> Vec<(String, String, Kind)> {
        [
            ("hubspot", "contacts", Kind::Person),
            ("hubspot", "companies", Kind::Organization),
            ("salesforce", "Lead", Kind::Person),
            ("salesforce", "Account", Kind::Organization),
        ]
        .into_iter()
        .map(|(c, o, k)| (c.to_owned(), o.to_owned(), k))
        .collect()
    }

    fn entry(record: u128, not_before: i64) -> OutboxEntry {
        OutboxEntry {
            record: Uuid::from_u128(record),
            object: "contacts".into(),
            op: QueuedOp::Upsert,
            hash: [0; 16],
            enqueued_ts: 0,
            attempts: 0,
            not_before,
        }
    }

    #[test]
    fn entries_not_due_are_skipped_and_those_behind_them_taken() {
        // A window headed by entries backing off: the due ones behind still go.
        let mut window: Vec<(u64, OutboxEntry)> =
            (1..=300).map(|s| (s, entry(s.into(), 50))).collect();
        window.push((301, entry(9_001, 0)));
        window.push((302, entry(9_002, 10)));
        window.push((303, entry(9_001, 0)));
        let (pending, order, next_due) = due_entries(window, 10);
        assert_eq!(next_due, Some(50));
        assert_eq!(order.len(), 2);
        assert_eq!(pending[&order[0]].seqs, vec![301, 303]);
        assert_eq!(pending[&order[1]].seqs, vec![302]);
        assert_eq!(earliest(Some(7), None), Some(7));
        assert_eq!(earliest(Some(7), Some(3)), Some(3));
    }

    #[test]
    fn a_first_read_that_never_ends_holds_creates_of_its_own_kind_only() {
        let read = [
            "hubspot/contacts",
            "hubspot/companies",
            "salesforce/Account",
        ];
        let unread = first_unread(&objects(), |c, o| {
            Ok(read.contains(&format!("{c}/{o}").as_str()))
        })
        .unwrap();
        assert!(!unread.is_empty());
        assert_eq!(unread.holds(Some(Kind::Person)), Some("salesforce/Lead"));
        assert_eq!(unread.holds(Some(Kind::Organization)), None);
        assert_eq!(unread.holds(Some(Kind::Deal)), None);
        // A record gone since it was queued is held while anything is unread.
        assert_eq!(unread.holds(None), Some("salesforce/Lead"));
    }

    #[test]
    fn creates_are_held_while_starting_and_free_once_everything_was_read() {
        assert_eq!(
            Unread::Starting.holds(Some(Kind::Deal)),
            Some("every connector, starting")
        );
        let unread = first_unread(&objects(), |_, _| Ok(true)).unwrap();
        assert!(unread.is_empty());
        assert_eq!(unread.holds(Some(Kind::Person)), None);
        assert_eq!(unread.holds(None), None);
    }

    #[test]
    fn each_kind_waits_for_its_first_unread_object_in_order() {
        let unread = first_unread(&objects(), |_, _| Ok(false)).unwrap();
        assert_eq!(unread.holds(Some(Kind::Person)), Some("hubspot/contacts"));
        assert_eq!(
            unread.holds(Some(Kind::Organization)),
            Some("hubspot/companies")
        );
    }
}
