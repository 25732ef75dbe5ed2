//! The sync runtime: per connector, poll loops (one per readable object), a push
//! dispatcher and webhook intake, each supervised; and the background upkeep of
//! `/status` figures.
//!
//! Data flows one way: connector -> engine -> store -> dispatcher -> connector.

pub mod dispatch;
pub mod flush;
pub mod inbox;
pub mod poll;
pub mod retry;
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

    /// Start a full re-read of a connector (one object, or all it reads). Pages are
    /// applied as they come; the object's cursor moves only once the re-read completes,
    /// so an interrupted re-read leaves incremental sync where it was.
    pub fn resync(&self, connector: &str, object: Option<&str>) -> Result<Vec<String>, String> {
        let conn = self
            .connectors
            .get(connector)
            .cloned()
            .ok_or_else(|| format!("no running connector `{connector}`"))?;
        let all = self.objects.get(connector).cloned().unwrap_or_default();
        let objects = match object {
            Some(o) if all.iter().any(|x| x == o) => vec![o.to_owned()],
            Some(o) => {
                return Err(format!(
                    "`{connector}` does not read `{o}`; it reads: {}",
                    all.join(", ")
                ))
            }
            None => all,
        };
        let (engine, status, cancel, id, list) = (
            self.engine.clone(),
            self.status.clone(),
            self.cancel.clone(),
            connector.to_owned(),
            objects.clone(),
        );
        self.tasks.spawn(format!("resync {connector}"), async move {
            for object in list {
                let mut progress = crate::status::ResyncProgress { object: object.clone(), ..Default::default() };
                status.update(&id, |s| s.resync = Some(progress.clone()));
                let mut cursor: Option<String> = None;
                let outcome: Result<(), String> = loop {
                    if cancel.is_cancelled() {
                        break Err("interrupted by shutdown".into());
                    }
                    let page = match conn.fetch(&object, cursor.as_deref()).await {
                        Ok(p) => p,
                        Err(e) if e.is_retryable() => {
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                            continue;
                        }
                        Err(e) => break Err(e.to_string()),
                    };
                    let n = page.changes.len() as u64;
                    let next = page.cursor.clone();
                    let more = page.more;
                    let (e, c) = (engine.clone(), id.clone());
                    let p = crate::engine::Page { object: object.clone(), changes: page.changes, cursor: None };
                    if let Err(err) = tokio::task::spawn_blocking(move || e.apply(&c, p)).await.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())) {
                        break Err(err);
                    }
                    progress.pages += 1;
                    progress.records += n;
                    status.update(&id, |s| {
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
                match (outcome, cursor) {
                    (Ok(()), Some(final_cursor)) => {
                        let (e, c, o) = (engine.clone(), id.clone(), object.clone());
                        let _ = tokio::task::spawn_blocking(move || e.set_cursor(&c, &o, &final_cursor)).await;
                        progress.done = true;
                    }
                    (Ok(()), None) => progress.done = true,
                    (Err(e), _) => {
                        tracing::error!(connector = %id, object = %object, error = %e, "resync failed; the cursor was left where it was");
                        progress.error = Some(e);
                    }
                }
                status.update(&id, |s| s.resync = Some(progress.clone()));
            }
        });
        Ok(objects)
    }
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
    let mut first_read = Vec::new();

    for (_, c) in config.connectors.iter().filter(|(_, c)| c.enabled) {
        let Some(kind) = registry.get(&c.type_name) else {
            continue;
        };
        let mapped_fields: std::collections::BTreeMap<String, Vec<String>> = c
            .objects
            .iter()
            .map(|(name, o)| {
                let fields = o
                    .fields
                    .keys()
                    .map(|f| f.split('.').next().unwrap_or(f).to_owned());
                (name.clone(), fields.collect())
            })
            .collect();
        let ctx = revsync_sdk::BuildContext {
            id: &c.id,
            params: &c.params,
            rate_limit: &c.rate_limit,
            mapped_fields: &mapped_fields,
        };
        let built = match kind.build(&ctx) {
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
        });
        let (name, st, cn) = (format!("push {}", c.id), status.clone(), cancel.clone());
        tasks.spawn(
            name.clone(),
            supervise(name, c.id.clone(), st, cn, move || dispatcher.clone().run()),
        );
        status.set_state(&c.id, ConnectorState::Idle);
        tracing::info!(connector = %c.id, "connector started");
    }

    first_reads.set(first_read);
    // Inbound dead letters kept from earlier runs; later ones are counted as they come.
    for (_, letter) in engine.inbound_dead_letters(None, usize::MAX)? {
        status.update(&letter.connector, |s| s.inbound_dead_letters += 1);
    }
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
    Ok(Arc::new(Runtime {
        connectors,
        inbox,
        engine: engine.clone(),
        status: status.clone(),
        tasks: tasks.clone(),
        cancel: cancel.clone(),
        objects: read_by,
    }))
}

fn read_objects(map: &mut HashMap<String, Vec<String>>, connector: &str, object: &str) {
    map.entry(connector.to_owned())
        .or_default()
        .push(object.to_owned());
}

/// Keep outbox depth, dead letters, lag and rate-limit figures on `/status` current.
async fn upkeep(
    engine: Arc<Engine>,
    connectors: Arc<HashMap<String, Arc<dyn Connector>>>,
    status: Arc<StatusHub>,
    cancel: CancellationToken,
) {
    loop {
        for c in status.snapshot() {
            let limits = connectors.get(&c.id).and_then(|conn| conn.rate_limit());
            let notices = connectors
                .get(&c.id)
                .map(|conn| conn.notices())
                .unwrap_or_default();
            status.update(&c.id, |s| {
                s.notices = notices;
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
            let (e, id) = (engine.clone(), c.id.clone());
            let counts = tokio::task::spawn_blocking(move || {
                (
                    e.outbox_len(&id, 1_000_000),
                    e.dead_letter_count(&id, 1_000_000),
                )
            })
            .await;
            if let Ok((Ok(outbox), Ok(dead))) = counts {
                status.update(&c.id, |s| {
                    s.outbox_depth = outbox as u64;
                    s.dead_letters = dead as u64;
                });
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
