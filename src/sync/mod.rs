//! The sync runtime: per connector, poll loops (one per readable object), a push
//! dispatcher and webhook intake, each supervised; and the background upkeep of
//! `/status` figures.
//!
//! Data flows one way: connector -> engine -> store -> dispatcher -> connector.

pub mod backoff;
pub mod dispatch;
pub mod flush;
pub mod inbox;
pub mod pause;
pub mod poll;
pub mod retry;
pub mod seen;
mod supervise;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use revsync_sdk::Connector;
use tokio_util::sync::CancellationToken;

use crate::app::Tasks;
use crate::config::{Config, Direction};
use crate::engine::Engine;
use crate::registry::Registry;
use crate::status::{ConnectorState, StatusHub};
use crate::store::Store;
use inbox::Inbox;
use supervise::supervise;

/// The running connectors and the inbox, shared with the HTTP layer.
pub struct Runtime {
    pub connectors: Arc<HashMap<String, Arc<dyn Connector>>>,
    pub inbox: Arc<Inbox>,
    engine: Arc<Engine>,
    status: Arc<StatusHub>,
    tasks: Tasks,
    cancel: CancellationToken,
    /// Readable objects per connector.
    objects: HashMap<String, Vec<String>>,
    /// Connectors with a re-read running.
    resyncing: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    pauses: Arc<pause::Pauses>,
}

/// Why a re-read was not started.
#[derive(Debug, thiserror::Error)]
pub enum ResyncError {
    #[error("no running connector `{0}`")]
    UnknownConnector(String),
    #[error("`{connector}` does not read `{object}`; it reads: {reads}")]
    UnknownObject {
        connector: String,
        object: String,
        reads: String,
    },
    /// A second re-read of one connector would race the first over its cursors.
    #[error("a resync of `{0}` is already running; wait for it to finish (see /status)")]
    AlreadyRunning(String),
}

/// Retryable read failures in a row a re-read waits out before it gives up.
const RESYNC_MAX_RETRIES: usize = 8;

/// Marks a connector as re-reading until dropped (when the re-read ends, however it ends).
struct Resyncing {
    running: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    connector: String,
}

impl Drop for Resyncing {
    fn drop(&mut self) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.connector);
    }
}

impl Runtime {
    /// Replay the inbound dead letter `id`: its change as it was, or a read by id through
    /// its connector. False when there is no such letter.
    pub async fn replay_inbound(&self, id: &str) -> Result<bool, String> {
        let connector = self
            .engine
            .inbound_dead_letter(id)
            .map_err(|e| e.to_string())?
            .map(|l| l.connector);
        let replayed = self.inbox.replay(&self.engine, id).await?;
        if let (true, Some(c)) = (replayed, connector) {
            self.status.update(&c, |s| {
                s.inbound_dead_letters = s.inbound_dead_letters.saturating_sub(1)
            });
        }
        Ok(replayed)
    }

    /// Pause (or resume) `connector`'s polls and pushes, kept in the store first so the
    /// answer is true after a restart too. Blocking: the store is written.
    pub fn set_paused(&self, connector: &str, paused: bool) -> Result<bool, String> {
        if !self.connectors.contains_key(connector) {
            return Err(format!("no running connector `{connector}`"));
        }
        self.engine
            .set_paused(connector, paused)
            .map_err(|e| e.to_string())?;
        let changed = self.pauses.set(connector, paused);
        // Shown now: the loops see it at their next turn (a poll in flight finishes).
        self.status.update(connector, |s| {
            if paused {
                s.state = ConnectorState::Paused;
                s.note = Some(pause::NOTE.to_owned());
            } else if s.note.as_deref() == Some(pause::NOTE) {
                s.state = ConnectorState::Idle;
                s.note = None;
            }
        });
        if changed {
            tracing::info!(
                connector,
                paused,
                "an operator paused or resumed the connector"
            );
        }
        Ok(changed)
    }

    pub fn is_paused(&self, connector: &str) -> bool {
        self.pauses.is_paused(connector)
    }

    /// Start a full re-read of a connector (one object, or all it reads). Pages are
    /// applied as they come; the object's cursor moves only once the re-read completes,
    /// so an interrupted re-read leaves incremental sync where it was. One at a time per
    /// connector.
    pub fn resync(
        &self,
        connector: &str,
        object: Option<&str>,
    ) -> Result<Vec<String>, ResyncError> {
        let conn = self
            .connectors
            .get(connector)
            .cloned()
            .ok_or_else(|| ResyncError::UnknownConnector(connector.to_owned()))?;
        let all = self.objects.get(connector).cloned().unwrap_or_default();
        let objects = match object {
            Some(o) if all.iter().any(|x| x == o) => vec![o.to_owned()],
            Some(o) => {
                return Err(ResyncError::UnknownObject {
                    connector: connector.to_owned(),
                    object: o.to_owned(),
                    reads: all.join(", "),
                })
            }
            None => all,
        };
        let guard = {
            let mut running = self.resyncing.lock().unwrap_or_else(|p| p.into_inner());
            if !running.insert(connector.to_owned()) {
                return Err(ResyncError::AlreadyRunning(connector.to_owned()));
            }
            Resyncing {
                running: self.resyncing.clone(),
                connector: connector.to_owned(),
            }
        };
        let (engine, status, cancel, id, list) = (
            self.engine.clone(),
            self.status.clone(),
            self.cancel.clone(),
            connector.to_owned(),
            objects.clone(),
        );
        self.tasks.spawn(format!("resync {connector}"), async move {
            let _guard = guard;
            let mut completed = Vec::new();
            for object in list {
                let mut progress =
                    reread(&*conn, &engine, &status, &cancel, &id, &object, &completed).await;
                if progress.error.is_none() {
                    completed.push(crate::status::ResyncDone {
                        object: object.clone(),
                        pages: progress.pages,
                        records: progress.records,
                    });
                    progress.completed = completed.clone();
                }
                status.update(&id, |s| s.resync = Some(progress.clone()));
                if progress.error.is_some() {
                    // The objects after it are not read: the operator sees one failure.
                    break;
                }
            }
        });
        Ok(objects)
    }
}

/// Read one object from its start, applying each page; move its cursor at the end.
async fn reread(
    conn: &dyn Connector,
    engine: &Arc<Engine>,
    status: &StatusHub,
    cancel: &CancellationToken,
    id: &str,
    object: &str,
    completed: &[crate::status::ResyncDone],
) -> crate::status::ResyncProgress {
    let mut progress = crate::status::ResyncProgress {
        object: object.to_owned(),
        completed: completed.to_vec(),
        ..Default::default()
    };
    status.update(id, |s| s.resync = Some(progress.clone()));
    let mut cursor: Option<String> = None;
    let mut retry = backoff::Backoff::new(backoff::exponential(
        Duration::from_secs(1),
        Duration::from_secs(60),
    ))
    .at_most(RESYNC_MAX_RETRIES);
    let outcome: Result<(), String> = loop {
        if cancel.is_cancelled() {
            break Err("interrupted by shutdown".into());
        }
        let read = conn.fetch(object, cursor.as_deref());
        let page = match revsync_sdk::Shutdown::new(cancel.clone()).read(read).await {
            Ok(p) => {
                retry.reset();
                p
            }
            Err(revsync_sdk::ConnectorError::Cancelled) => {
                break Err("interrupted by shutdown".into());
            }
            Err(e) if e.is_retryable() => {
                let Some(wait) = retry.failed() else {
                    break Err(format!("gave up after {RESYNC_MAX_RETRIES} retries: {e}"));
                };
                // The system's own Retry-After, when longer, is the one to honour.
                let wait = match &e {
                    revsync_sdk::ConnectorError::RateLimited {
                        retry_after: Some(d),
                        ..
                    } => wait.max(*d),
                    _ => wait,
                };
                tracing::warn!(connector = id, object, error = %e, wait_ms = wait.as_millis() as u64, "resync read failed; retrying");
                if !backoff::sleep(wait, cancel).await {
                    break Err("interrupted by shutdown".into());
                }
                continue;
            }
            Err(e) => break Err(e.to_string()),
        };
        let n = page.changes.len() as u64;
        let (next, more) = (page.cursor.clone(), page.more);
        let (e, c) = (engine.clone(), id.to_owned());
        let p = crate::engine::Page {
            object: object.to_owned(),
            changes: page.changes,
            cursor: None,
        };
        if let Err(err) = blocking(move || e.apply(&c, p)).await {
            break Err(err);
        }
        progress.pages += 1;
        progress.records += n;
        status.update(id, |s| {
            s.resync = Some(progress.clone());
            s.records_in += n;
        });
        if next.is_some() {
            cursor = next;
        }
        if !more {
            break Ok(());
        }
    };
    let written = match (&outcome, cursor) {
        (Ok(()), Some(last)) => {
            let (e, c, o) = (engine.clone(), id.to_owned(), object.to_owned());
            blocking(move || e.set_cursor(&c, &o, &last)).await
        }
        _ => Ok(()),
    };
    settle(&mut progress, outcome, written);
    if let Some(e) = &progress.error {
        tracing::error!(connector = id, object, error = %e, "resync failed; the cursor was left where it was");
    }
    progress
}

/// A re-read is done only when it read everything and its cursor was stored.
fn settle(
    progress: &mut crate::status::ResyncProgress,
    read: Result<(), String>,
    cursor_written: Result<(), String>,
) {
    match read.and_then(|()| cursor_written.map_err(|e| format!("storing the cursor: {e}"))) {
        Ok(()) => progress.done = true,
        Err(e) => progress.error = Some(e),
    }
}

/// Run a store call on the blocking pool, its failure (or panic) as a message.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::engine::EngineError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
}

/// Build one configured connector through its type, as the daemon runs it (`None`: the
/// type is unknown, or this build has no API client for it).
pub fn build_connector(
    registry: &Registry,
    c: &crate::config::ConnectorConfig,
    shutdown: revsync_sdk::Shutdown,
) -> Option<Result<Arc<dyn Connector>, revsync_sdk::ConnectorError>> {
    let kind = registry.get(&c.type_name)?;
    // What the YAML mapping reads or writes, per object (top-level names): a connector
    // that must name its fields (SOQL) selects these.
    let mapped_fields: std::collections::BTreeMap<String, Vec<String>> = c
        .objects
        .iter()
        .map(|(name, o)| {
            // The filter's fields must be read too, mapped or not.
            let fields = o
                .fields
                .keys()
                .chain(o.filter.keys())
                .map(|f| f.split('.').next().unwrap_or(f).to_owned());
            let mut fields: Vec<String> = fields.collect();
            fields.sort();
            fields.dedup();
            (name.clone(), fields)
        })
        .collect();
    let objects = c
        .objects
        .iter()
        .map(|(name, o)| (name.clone(), o.decl()))
        .collect();
    let ctx = revsync_sdk::BuildContext {
        id: &c.id,
        params: &c.params,
        rate_limit: &c.rate_limit,
        http: &c.http,
        mapped_fields: &mapped_fields,
        objects: &objects,
        shutdown,
    };
    kind.build(&ctx)
}

pub fn start(
    config: &Config,
    registry: &Registry,
    engine: &Arc<Engine>,
    store: &Arc<dyn Store>,
    status: &Arc<StatusHub>,
    tasks: &Tasks,
    cancel: &CancellationToken,
) -> anyhow::Result<Arc<Runtime>> {
    let flusher = flush::Flusher::start(store.clone());
    let inbox = Inbox::open(
        store.clone(),
        flusher,
        retry::RetryPolicy::from(&config.daemon.retry),
    )?;
    let mut connectors: HashMap<String, Arc<dyn Connector>> = HashMap::new();
    let mut read_by: HashMap<String, Vec<String>> = HashMap::new();
    let first_reads = Arc::new(dispatch::FirstReads::default());
    let pauses = Arc::new(pause::Pauses::new(engine.paused()?));
    let mut first_read = Vec::new();
    // Inbound dead letters kept from earlier runs, counted before any poll starts: a
    // poll's own letters are counted as they come, and one kept before this scan would
    // be counted twice.
    for (_, letter) in engine.inbound_dead_letters(None, usize::MAX)? {
        status.update(&letter.connector, |s| s.inbound_dead_letters += 1);
    }

    for (_, c) in config.connectors.iter().filter(|(_, c)| c.enabled) {
        if registry.get(&c.type_name).is_none() {
            continue;
        }
        let built = match build_connector(registry, c, revsync_sdk::Shutdown::new(cancel.clone())) {
            None => {
                status.update(&c.id, |s| {
                    s.state = ConnectorState::Idle;
                    s.note = Some(format!("no API client for `{}` in this build yet: configuration validated, not syncing", c.type_name));
                });
                tracing::warn!(connector = %c.id, r#type = %c.type_name, "connector type has no API client in this build; not syncing");
                continue;
            }
            Some(Err(e)) => {
                status.update(&c.id, |s| {
                    s.state = if matches!(e, revsync_sdk::ConnectorError::Auth(_)) {
                        ConnectorState::AuthFailed
                    } else {
                        ConnectorState::BackingOff
                    };
                    s.errors.count += 1;
                    s.errors.last_message = Some(format!("cannot start: {e}"));
                });
                tracing::error!(connector = %c.id, error = %e, "connector cannot start");
                continue;
            }
            Some(Ok(conn)) => conn,
        };
        connectors.insert(c.id.clone(), built.clone());
        let caps = built.capabilities();

        let caught_up = Arc::new(dispatch::CaughtUp::default());
        for (object, obj_cfg) in &c.objects {
            let readable = caps.objects.iter().any(|o| &o.name == object && o.read);
            if obj_cfg.direction == Direction::Out || !readable {
                continue;
            }
            read_objects(&mut read_by, &c.id, object);
            first_read.push((c.id.clone(), object.clone(), obj_cfg.kind));
            let poll = Arc::new(poll::PollLoop {
                connector_id: c.id.clone(),
                object: object.clone(),
                connector: built.clone(),
                engine: engine.clone(),
                status: status.clone(),
                interval: Duration::from_secs(c.poll.interval_secs).max(built.min_poll_interval()),
                jitter_pct: c.poll.jitter_pct,
                cancel: cancel.clone(),
                caught_up: caught_up.clone(),
                backfilled: Default::default(),
                pauses: pauses.clone(),
            });
            let (name, st, cn) = (
                format!("poll {}/{}", c.id, object),
                status.clone(),
                cancel.clone(),
            );
            tasks.spawn(
                name.clone(),
                supervise(name, c.id.clone(), st, cn, move || poll.clone().run()),
            );
        }

        let dispatcher = Arc::new(dispatch::Dispatcher {
            connector_id: c.id.clone(),
            connector: built.clone(),
            engine: engine.clone(),
            status: status.clone(),
            cancel: cancel.clone(),
            gated: read_by.get(&c.id).into_iter().flatten().cloned().collect(),
            caught_up,
            first_reads: first_reads.clone(),
            resume_after: Default::default(),
            pass: Default::default(),
            retry: retry::RetryPolicy::from(&config.daemon.retry),
            dry_run: c.dry_run,
            pauses: pauses.clone(),
        });
        status.update(&c.id, |s| s.dry_run = c.dry_run);
        let (name, st, cn) = (format!("push {}", c.id), status.clone(), cancel.clone());
        tasks.spawn(
            name.clone(),
            supervise(name, c.id.clone(), st, cn, move || dispatcher.clone().run()),
        );
        if pauses.is_paused(&c.id) {
            // Its loops say so too once they run; this holds from the first `/status`.
            status.update(&c.id, |s| {
                s.state = ConnectorState::Paused;
                s.note = Some(pause::NOTE.to_owned());
            });
            tracing::warn!(connector = %c.id, "connector started paused (an operator paused it); resume it from the console or the admin API");
        } else {
            status.set_state(&c.id, ConnectorState::Idle);
        }
        tracing::info!(connector = %c.id, "connector started");
    }

    first_reads.set(first_read);
    let connectors = Arc::new(connectors);
    {
        let (inbox, engine, conns, st, cn) = (
            inbox.clone(),
            engine.clone(),
            connectors.clone(),
            status.clone(),
            cancel.clone(),
        );
        tasks.spawn("webhook inbox", async move {
            inbox.drain(engine, conns, st, cn).await
        });
    }
    {
        let (engine, st, cn, conns) = (
            engine.clone(),
            status.clone(),
            cancel.clone(),
            connectors.clone(),
        );
        tasks.spawn("status upkeep", upkeep(engine, conns, st, cn));
    }
    tasks.spawn(
        "retention",
        retention(
            store.clone(),
            engine.clone(),
            config.daemon.retention.clone(),
            cancel.clone(),
        ),
    );
    Ok(Arc::new(Runtime {
        connectors,
        inbox,
        engine: engine.clone(),
        status: status.clone(),
        tasks: tasks.clone(),
        cancel: cancel.clone(),
        objects: read_by,
        resyncing: Default::default(),
        pauses,
    }))
}

fn read_objects(map: &mut HashMap<String, Vec<String>>, connector: &str, object: &str) {
    map.entry(connector.to_owned())
        .or_default()
        .push(object.to_owned());
}

/// Keep outbox depth, dead letters, lag and rate-limit figures on `/status` current,
/// without a store call on the async threads (the store's own figures: `AppState`).
async fn upkeep(
    engine: Arc<Engine>,
    connectors: Arc<HashMap<String, Arc<dyn Connector>>>,
    status: Arc<StatusHub>,
    cancel: CancellationToken,
) {
    let mut per_minute: HashMap<String, crate::status::PerMinute> = HashMap::new();
    loop {
        for c in status.snapshot() {
            let limits = connectors.get(&c.id).and_then(|conn| conn.rate_limit());
            let quota = connectors.get(&c.id).and_then(|conn| conn.quota_left());
            let sent = limits.map_or(0, |l| l.requests);
            let last_minute = per_minute
                .entry(c.id.clone())
                .or_default()
                .observe(std::time::Instant::now(), sent);
            let notices = connectors
                .get(&c.id)
                .map(|conn| conn.notices())
                .unwrap_or_default();
            status.update(&c.id, |s| {
                s.notices = notices;
                s.api_requests = sent;
                s.api_requests_last_minute = last_minute;
                s.api_quota = quota.map(|q| crate::status::ApiQuota {
                    remaining: q.remaining,
                    limit: q.limit,
                    window: q.window,
                });
                s.lag_secs = s
                    .last_success_at
                    .map(|t| (chrono::Utc::now() - t).num_seconds().max(0) as u64);
                s.rate_limit = limits.map(|l| crate::status::RateLimitStatus {
                    requests: l.configured.requests,
                    per_secs: l.configured.per.as_secs_f64(),
                    requests_sent: l.requests,
                    throttled: l.throttled_429,
                    current_wait_ms: l.current_wait_ms,
                });
            });
            // Kept as entries move: no store read, nothing decoded.
            let counts = engine.queue_counts(&c.id);
            status.update(&c.id, |s| {
                s.outbox_depth = counts.outbox;
                s.dead_letters = counts.dead_letters;
            });
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Entries read per page by the retention passes: each page is one short blocking call.
const PRUNE_PAGE: usize = 1000;

/// Forget webhook ids past their TTL and audit entries past their bounds, every
/// `prune_interval_secs`, a page at a time on the blocking pool, until `cancel`.
pub async fn retention(
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    cfg: crate::config::RetentionConfig,
    cancel: CancellationToken,
) {
    let every = Duration::from_secs(cfg.prune_interval_secs.max(1));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let ttl = cfg.webhook_seen_ttl_secs;
        let seen_pass = (store.clone(), seen::now_secs(), None::<Vec<u8>>);
        let ids = in_pages(seen_pass, &cancel, "webhook ids", move |(s, now, after)| {
            let p = seen::prune_page(s.as_ref(), *now, ttl, after.as_deref(), PRUNE_PAGE)?;
            *after = p.next;
            Ok((p.removed, after.is_some()))
        })
        .await;
        let pruner = engine.audit_pruner(cfg.audit_max_entries_per_record, cfg.audit_max_age_days);
        let audit = in_pages((store.clone(), pruner), &cancel, "audit", |(s, p)| {
            let n = p.step(s.as_ref(), PRUNE_PAGE)?;
            Ok((n, !p.done()))
        })
        .await;
        tracing::debug!(
            webhook_ids = ids,
            audit_entries = audit,
            "retention pass done"
        );
    }
}

/// Run a background pass one page at a time on the blocking pool, until it ends, fails
/// (the next pass tries again) or shutdown starts. Returns how many entries it removed.
async fn in_pages<P: Send + 'static>(
    mut pass: P,
    cancel: &CancellationToken,
    what: &'static str,
    step: impl Fn(&mut P) -> Result<(usize, bool), crate::store::StoreError> + Clone + Send + 'static,
) -> usize {
    let mut removed = 0;
    while !cancel.is_cancelled() {
        let step = step.clone();
        let done = tokio::task::spawn_blocking(move || {
            let r = step(&mut pass);
            (pass, r)
        })
        .await;
        match done {
            Ok((p, Ok((n, more)))) => {
                removed += n;
                if !more {
                    break;
                }
                pass = p;
            }
            Ok((_, Err(e))) => {
                tracing::warn!(pass = what, error = %e, "pruning failed; the next pass retries");
                break;
            }
            Err(_) => break,
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ResyncProgress;

    #[test]
    fn a_resync_whose_cursor_was_not_stored_is_not_done() {
        let mut p = ResyncProgress::default();
        settle(&mut p, Ok(()), Err("store i/o: disk full".into()));
        assert!(!p.done);
        assert_eq!(
            p.error.as_deref(),
            Some("storing the cursor: store i/o: disk full")
        );
        let mut p = ResyncProgress::default();
        settle(&mut p, Err("interrupted by shutdown".into()), Ok(()));
        assert_eq!(
            (p.done, p.error.as_deref()),
            (false, Some("interrupted by shutdown"))
        );
        let mut p = ResyncProgress::default();
        settle(&mut p, Ok(()), Ok(()));
        assert!(p.done && p.error.is_none());
    }
}
