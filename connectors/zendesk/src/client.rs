//! Zendesk over the SDK's `ApiClient`: auth, the exports budget beside the account one,
//! error bodies, and bulk jobs (submit, wait out TooManyJobs, read their statuses together
//! until they finish).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::Method;
use revsync_sdk::http::{
    pause_when_exhausted, retry_after, AccountLimiter, ApiClient, ApiPolicy, ApiRequest, Auth,
    LimiterStats, Limits, Permit, RetryPolicy,
};
use revsync_sdk::{upstream_wait, ConnectorError, LimitScope, Shutdown};
use serde_json::Value;

use crate::config::{self, ZendeskParams};

/// Marks a TooManyJobs answer inside a `Transient` error, so the job loop can tell the
/// 30-job ceiling (wait for a slot) from any other failure.
const TOO_MANY_JOBS: &str = "TooManyJobs";

/// How Zendesk's answers differ from plain status codes.
pub struct ZendeskPolicy {
    /// Exports have their own per-minute budget; their header pauses only them.
    pub(crate) exports: Arc<AccountLimiter>,
}

impl ApiPolicy for ZendeskPolicy {
    fn classify(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Option<ConnectorError> {
        if (200..300).contains(&status) {
            return None;
        }
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let code = parsed
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if code == TOO_MANY_JOBS {
            // Not a request-budget problem: pausing the account would also stop the job
            // status polls that free the slots. The job loop waits instead.
            return Some(ConnectorError::Transient(format!(
                "{TOO_MANY_JOBS}: the account has 30 bulk jobs queued or running"
            )));
        }
        if status == 429 {
            return Some(ConnectorError::RateLimited {
                retry_after: retry_after(headers),
                scope: LimitScope::Burst,
            });
        }
        if matches!(status, 400 | 409 | 422) {
            return Some(ConnectorError::Permanent {
                detail: describe_error(parsed.as_ref())
                    .unwrap_or_else(|| format!("zendesk answered {status}")),
                status: Some(status),
                body: Some(revsync_sdk::http::truncated_body(body)),
            });
        }
        None
    }

    fn observe(&self, headers: &HeaderMap) -> Option<Duration> {
        if let Some(wait) = header_pair(headers, "zendesk-ratelimit-incremental-exports-cursor") {
            self.exports.pause_for(wait);
        }
        pause_when_exhausted(headers, "ratelimit-remaining", "ratelimit-reset")
            .or_else(|| pause_when_exhausted(headers, "x-rate-limit-remaining", "ratelimit-reset"))
    }
}

/// `total=20; remaining=0; resets=41` -> the reset delay once nothing remains.
fn header_pair(headers: &HeaderMap, name: &str) -> Option<Duration> {
    let value = headers.get(name)?.to_str().ok()?;
    (header_field(value, "remaining")? == 0).then(|| {
        header_field(value, "resets").map(|secs| upstream_wait(Duration::from_secs(secs)))
    })?
}

/// One `key=value` of a `total=30; remaining=29; resets=60` header.
fn header_field(value: &str, key: &str) -> Option<u64> {
    value.split(';').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k.trim() == key).then(|| v.trim().parse().ok())?
    })
}

/// The account's job slots from `zendesk-ratelimit-inflight-jobs`: (total, remaining).
fn inflight_jobs(value: &str) -> Option<(u64, u64)> {
    Some((
        header_field(value, "total")?,
        header_field(value, "remaining")?,
    ))
}

/// `RecordInvalid: Record validation errors (email: is invalid)`, from either error shape.
pub fn describe_error(v: Option<&Value>) -> Option<String> {
    let v = v?;
    if let Some(errors) = v.get("errors").and_then(Value::as_array) {
        let parts: Vec<String> = errors
            .iter()
            .map(|e| {
                let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
                format!("{}: {}", text("code"), text("detail"))
            })
            .collect();
        return Some(parts.join("; "));
    }
    let error = match v.get("error")? {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = error;
    if let Some(d) = v.get("description").and_then(Value::as_str) {
        out = format!("{out}: {d}");
    }
    if let Some(details) = v.get("details").filter(|d| !d.is_null()) {
        out = format!("{out} ({details})");
    }
    Some(out)
}

/// One Zendesk account: requests, exports and bulk jobs.
#[derive(Clone)]
pub struct ZendeskClient {
    api: ApiClient,
    auth: Auth,
    exports: Arc<AccountLimiter>,
    job_poll: Duration,
    job_timeout: Duration,
    watch: Arc<Watch>,
    /// Our jobs queued or running: at most `max_jobs_in_flight`.
    job_slots: Arc<JobSlots>,
    /// One submit at a time waits for its permit and slot.
    submitting: Arc<tokio::sync::Mutex<()>>,
    /// Submits waiting for a permit or a slot.
    submitters: Arc<AtomicUsize>,
}

impl ZendeskClient {
    pub fn new(p: &ZendeskParams, limits: Limits) -> Result<Self, ConnectorError> {
        let exports = Arc::new(AccountLimiter::new(Limits::new(
            p.exports_per_minute,
            Duration::from_secs(60),
        )));
        let policy = Arc::new(ZendeskPolicy {
            exports: exports.clone(),
        });
        let api = ApiClient::new(
            &p.api_base(),
            limits,
            RetryPolicy::default(),
            Duration::from_millis(p.timeout_ms),
            policy,
        )?;
        let auth = match &p.auth {
            config::Auth::ApiToken { email, token } => Auth::Basic {
                user: format!("{email}/token"),
                password: token.clone(),
            },
            config::Auth::Oauth { access_token } => Auth::Bearer(access_token.clone()),
        };
        Ok(Self {
            api,
            auth,
            exports,
            job_poll: Duration::from_millis(p.job_poll_interval_ms),
            job_timeout: Duration::from_secs(p.job_timeout_secs),
            watch: Arc::default(),
            job_slots: Arc::new(JobSlots::new(p.max_jobs_in_flight)),
            submitting: Arc::default(),
            submitters: Arc::default(),
        })
    }

    /// Caps every API answer's body.
    pub fn with_max_response_bytes(mut self, max: usize) -> Self {
        self.api = self.api.with_max_response_bytes(max);
        self
    }

    /// Ends every wait of this client (exports budget, job slots, job polls) when the
    /// daemon stops.
    pub fn with_shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.api = self.api.with_shutdown(shutdown.clone());
        self
    }

    pub fn request(&self, method: Method, path: &str) -> ApiRequest {
        ApiRequest::new(method, path).with_auth(self.auth.clone())
    }

    pub fn stats(&self) -> LimiterStats {
        self.api.limiter().stats()
    }

    pub async fn json(&self, req: ApiRequest) -> Result<Value, ConnectorError> {
        self.api.send(req).await?.json()
    }

    /// An incremental export page: takes an exports permit before the account's. With it,
    /// the account's clock at the answer (its `Date` header; ours when it has none), in
    /// Unix seconds: what the export holds back is measured on that clock.
    pub async fn export(&self, req: ApiRequest) -> Result<(Value, i64), ConnectorError> {
        self.api.shutdown().wait(self.exports.acquire()).await?;
        let resp = self.api.send(req).await?;
        let at = resp
            .header("date")
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
            .map_or_else(|| chrono::Utc::now().timestamp(), |d| d.timestamp());
        Ok((resp.json()?, at))
    }

    /// Submit a bulk request and wait for its job; the job's `results`.
    ///
    /// TooManyJobs waits for a slot with growing delays up to the job timeout, then hands
    /// the batch back as rate limited (nothing was queued, so a retry is safe).
    pub async fn run_job(&self, req: ApiRequest) -> Result<Vec<Value>, ConnectorError> {
        Ok(self.run_job_outcome(req).await?.results)
    }

    /// [`Self::run_job`], also telling a completed job from a failed one that still
    /// listed some results: there, an item it does not name was not necessarily done.
    pub async fn run_job_outcome(&self, req: ApiRequest) -> Result<JobOutcome, ConnectorError> {
        // Saturating: the params are range-checked, but a clock must not panic on them.
        let deadline = after_now(self.job_timeout);
        let mut wait = self.job_poll;
        // The slot is held from the submit until the job is known to have finished: read
        // as finished, or no longer counted by Zendesk's in-flight header (`JobSlots`).
        let (_slot, job) = loop {
            let (permit, mut slot) = self.take_slot(deadline).await?;
            match self.api.send_with(req.clone(), permit).await {
                Ok(resp) => {
                    slot.answered(resp.header(INFLIGHT_JOBS));
                    break (slot, resp.json::<Value>()?);
                }
                Err(ConnectorError::Transient(m)) if m.starts_with(TOO_MANY_JOBS) => {
                    // Nothing was queued: the slot is not ours while we wait.
                    drop(slot);
                    if after_now(wait) > deadline {
                        return Err(ConnectorError::RateLimited {
                            retry_after: Some(wait),
                            scope: LimitScope::Burst,
                        });
                    }
                    tracing::info!(
                        wait_ms = wait.as_millis() as u64,
                        "zendesk job slots full, waiting"
                    );
                    self.api.shutdown().sleep(wait).await?;
                    wait = wait.saturating_mul(2).min(Duration::from_secs(30));
                }
                Err(e) => return Err(e),
            }
        };
        let (status, id) = submitted_job(&job)?;
        if let Some(outcome) = job_outcome(&status, &id)? {
            return Ok(outcome);
        }
        // A submitted job left unwatched is an answer lost: the items stay queued and the
        // next run sends them again, which every push already survives.
        let status = self.finished_status(&id, deadline).await?;
        job_outcome(&status, &id)?
            .ok_or_else(|| malformed(&format!("job {id} read back as finished but is not")))
    }

    /// A request permit and a job slot of ours, by `deadline`; past it, the batch goes
    /// back as rate limited. The permit comes first, so a slot is never held through the
    /// limiter's wait; one submit at a time waits for them, so the status reads that
    /// free slots wait for their permits behind one submit, not behind every push.
    async fn take_slot(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<(Permit, Slot), ConnectorError> {
        let _waiting = Waiting::new(&self.submitters);
        let taking = async {
            let _turn = self.submitting.lock().await;
            let permit = self.api.permit().await?;
            let slot = self.job_slots.clone().take().await;
            Ok::<_, ConnectorError>((permit, slot))
        };
        match tokio::time::timeout_at(deadline, self.api.shutdown().wait(taking)).await {
            Ok(Ok(taken)) => taken,
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ConnectorError::RateLimited {
                retry_after: Some(self.job_poll),
                scope: LimitScope::Burst,
            }),
        }
    }

    /// Job `id`'s status once it has finished. The first look comes soon after the
    /// submit (small jobs finish fast), later ones further apart; every look at a job due
    /// is one shared read of all the jobs this client waits for, and those reads are at
    /// least [`Self::read_gap`] apart, so thirty jobs in flight cost one request per
    /// interval. Once no submit waits, looks stay half an interval apart at most: the
    /// backlog's last jobs are found finished soon after they finish.
    async fn finished_status(
        &self,
        id: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Value, ConnectorError> {
        let watched = Watched::new(&self.watch, id);
        let shutdown = self.api.shutdown();
        let mut delay = (self.job_poll / 4).max(Duration::from_millis(1));
        loop {
            let due = after_now(delay);
            if due > deadline {
                return Err(ConnectorError::Transient(format!(
                    "zendesk job {id} did not finish within {}s",
                    self.job_timeout.as_secs()
                )));
            }
            // Another waiter's read may bring this job's answer before it is due.
            let sleep = tokio::time::sleep_until(due);
            shutdown
                .wait(async {
                    tokio::select! {
                        () = sleep => {}
                        () = watched.answered.notified() => {}
                    }
                })
                .await?;
            if let Some(status) = self.watch.take(id) {
                return Ok(status);
            }
            let _reading = shutdown.wait(self.watch.reading.lock()).await?;
            if let Some(status) = self.watch.take(id) {
                return Ok(status);
            }
            // A read sent after this job fell due covered it: it is still running.
            let last = self.watch.last_read();
            if last.is_none_or(|at| at < due) {
                if let Some(at) = last {
                    shutdown
                        .wait(tokio::time::sleep_until(at + self.read_gap()))
                        .await?;
                }
                self.read_statuses().await?;
                if let Some(status) = self.watch.take(id) {
                    return Ok(status);
                }
            }
            // While no submit waits, a look costs no batch its turn: keep looking often.
            let longest = if self.submits_waiting() {
                self.job_poll.saturating_mul(2)
            } else {
                self.job_poll / 2
            };
            delay = delay.saturating_mul(2).min(longest);
        }
    }

    /// Whether a submit waits for its permit or slot: a status read then delays it.
    fn submits_waiting(&self) -> bool {
        self.submitters.load(Ordering::Relaxed) > 0
    }

    /// The least time between two status reads: `job_poll` while submits wait for the
    /// budget, a quarter of it once none does (the last jobs of a backlog, or a trickle),
    /// when reading sooner delays nothing and finds the last jobs finished sooner.
    fn read_gap(&self) -> Duration {
        if self.submits_waiting() {
            // Slots known from Zendesk's header do not wait for reads: only the records'
            // confirmations do, and each read would take a submit's permit.
            if self.job_slots.header_seen() {
                self.job_poll.saturating_mul(2)
            } else {
                self.job_poll
            }
        } else {
            self.job_poll / 4
        }
    }

    /// One `job_statuses/show_many` read of every job waited for; the finished ones are
    /// kept for their waiters.
    async fn read_statuses(&self) -> Result<(), ConnectorError> {
        let ids = self.watch.start_read();
        for chunk in ids.chunks(STATUS_IDS) {
            let req = self
                .request(Method::GET, "job_statuses/show_many")
                .with_query("ids", chunk.join(","));
            let v = self.json(req).await?;
            let statuses = v
                .get("job_statuses")
                .and_then(Value::as_array)
                .ok_or_else(|| malformed("job status answer without `job_statuses`"))?;
            self.watch.finished(statuses);
        }
        Ok(())
    }
}

/// Counts a submit waiting for its permit and slot while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Ids per `job_statuses/show_many` read; more than the 30 jobs an account can run.
const STATUS_IDS: usize = 100;

/// Zendesk's answer to a bulk submit says how many of the account's job slots are free.
const INFLIGHT_JOBS: &str = "zendesk-ratelimit-inflight-jobs";

/// Our jobs queued or running at Zendesk, kept at most `cap`.
///
/// A job counts from its submit until a status read finds it finished. Zendesk frees the
/// slot when the job finishes, up to a read interval earlier, and every submit's answer
/// says how many of the account's slots are then taken (`zendesk-ratelimit-inflight-jobs`).
/// Those taken slots, plus every submit of ours the answer may not have counted yet,
/// bound how many of our jobs still run: a slot Zendesk has freed is ours again at once,
/// not only at the next read. The bound never counts another integration's job as free,
/// so the cap holds for our jobs whatever else runs on the account.
pub(crate) struct JobSlots {
    cap: usize,
    state: std::sync::Mutex<SlotState>,
    freed: tokio::sync::Notify,
}

#[derive(Default)]
struct SlotState {
    /// Jobs submitted (or being submitted) whose finish no read has seen yet.
    held: usize,
    /// At most this many of them still run (from the last in-flight header, plus the
    /// submits since); none before the first header.
    running_bound: Option<usize>,
    /// Submits started so far: the next one's number.
    started: u64,
    /// Submits sent whose answer has not come back.
    unanswered: BTreeSet<u64>,
}

impl SlotState {
    fn running(&self) -> usize {
        self.running_bound.map_or(self.held, |b| b.min(self.held))
    }
}

impl JobSlots {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            state: std::sync::Mutex::default(),
            freed: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until fewer than `cap` of our jobs can be running, then counts one more.
    pub(crate) async fn take(self: Arc<Self>) -> Slot {
        let (seq, unanswered_before) = loop {
            // Registered before the check, so a slot freed in between still wakes us.
            let freed = self.freed.notified();
            if let Some(taken) = self.try_count() {
                break taken;
            }
            freed.await;
        };
        Slot {
            slots: self,
            seq,
            unanswered_before,
        }
    }

    /// Counts one more job if fewer than `cap` can be running: its submit's number, and
    /// how many of ours were unanswered then.
    fn try_count(&self) -> Option<(u64, usize)> {
        let mut s = self.lock();
        if s.running() >= self.cap {
            return None;
        }
        s.held += 1;
        if let Some(b) = s.running_bound.as_mut() {
            *b += 1;
        }
        let seq = s.started;
        s.started += 1;
        let unanswered_before = s.unanswered.len();
        s.unanswered.insert(seq);
        Some((seq, unanswered_before))
    }

    /// Whether Zendesk's in-flight header has told us about the slots.
    fn header_seen(&self) -> bool {
        self.lock().running_bound.is_some()
    }

    /// How many of our jobs may be running now, for tests.
    #[cfg(test)]
    fn running(&self) -> usize {
        self.lock().running()
    }
}

/// One of our jobs, from before its submit until its waiter is done with it.
pub(crate) struct Slot {
    slots: Arc<JobSlots>,
    /// This submit's number.
    seq: u64,
    /// Our submits still unanswered when this one started: they may reach Zendesk after
    /// it, so its answer may not count them.
    unanswered_before: usize,
}

impl Slot {
    /// The submit's answer came, with Zendesk's in-flight header if it sent one.
    pub(crate) fn answered(&mut self, inflight: Option<&str>) {
        let slots = &self.slots;
        let mut s = slots.lock();
        s.unanswered.remove(&self.seq);
        let Some((total, remaining)) = inflight.and_then(inflight_jobs) else {
            return;
        };
        let taken = usize::try_from(total.saturating_sub(remaining)).unwrap_or(usize::MAX);
        // Every submit of ours that the answer may not count: the ones started after
        // this one, and the ones that were on their way when it started.
        let since = usize::try_from(s.started - 1 - self.seq).unwrap_or(usize::MAX);
        let bound = taken
            .saturating_add(since)
            .saturating_add(self.unanswered_before);
        let before = s.running();
        s.running_bound = Some(s.running_bound.map_or(bound, |b| b.min(bound)));
        if s.running() < before {
            drop(s);
            slots.freed.notify_waiters();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.slots.lock();
        s.held = s.held.saturating_sub(1);
        s.unanswered.remove(&self.seq);
        drop(s);
        self.slots.freed.notify_waiters();
    }
}

/// The jobs one client waits for, and the reads of their statuses they share.
#[derive(Default)]
struct Watch {
    state: std::sync::Mutex<WatchState>,
    /// One status read at a time: the waiters that fall due meanwhile take its answer.
    reading: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct WatchState {
    /// Per job waited for, how its waiter learns that a read brought its answer.
    waiting: BTreeMap<String, Arc<tokio::sync::Notify>>,
    /// Finished jobs' statuses, until their waiters take them.
    finished: HashMap<String, Value>,
    last_read: Option<tokio::time::Instant>,
}

impl Watch {
    fn lock(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, id: &str) -> Option<Value> {
        self.lock().finished.remove(id)
    }

    fn last_read(&self) -> Option<tokio::time::Instant> {
        self.lock().last_read
    }

    /// Stamps the read before it is sent: a job falling due after that waits for the next.
    fn start_read(&self) -> Vec<String> {
        let mut s = self.lock();
        s.last_read = Some(tokio::time::Instant::now());
        s.waiting.keys().cloned().collect()
    }

    fn finished(&self, statuses: &[Value]) {
        let mut s = self.lock();
        for status in statuses {
            let Some(id) = status.get("id").and_then(Value::as_str) else {
                continue;
            };
            let running = matches!(
                status.get("status").and_then(Value::as_str),
                Some("queued" | "working")
            );
            if running {
                continue;
            }
            if let Some(answered) = s.waiting.get(id).cloned() {
                s.finished.insert(id.to_owned(), status.clone());
                answered.notify_one();
            }
        }
    }
}

/// A job waited for, from its submit until its waiter returns or gives up.
struct Watched<'a> {
    watch: &'a Watch,
    id: String,
    answered: Arc<tokio::sync::Notify>,
}

impl<'a> Watched<'a> {
    fn new(watch: &'a Watch, id: &str) -> Self {
        let answered = Arc::new(tokio::sync::Notify::new());
        watch.lock().waiting.insert(id.to_owned(), answered.clone());
        Self {
            watch,
            id: id.to_owned(),
            answered,
        }
    }
}

impl Drop for Watched<'_> {
    fn drop(&mut self) {
        let mut s = self.watch.lock();
        s.waiting.remove(&self.id);
        s.finished.remove(&self.id);
    }
}

/// A finished job: its per-item results, and whether it completed (or failed part way).
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    pub results: Vec<Value>,
    pub completed: bool,
}

/// A bulk request's answer: its `job_status` and the job's id.
pub(crate) fn submitted_job(answer: &Value) -> Result<(Value, String), ConnectorError> {
    let status = answer
        .get("job_status")
        .cloned()
        .ok_or_else(|| malformed("a bulk request answered without `job_status`"))?;
    let id = status
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("job_status without an id"))?
        .to_owned();
    Ok((status, id))
}

/// What a `job_status` says of job `id`: its outcome once finished, `None` while it runs.
pub(crate) fn job_outcome(status: &Value, id: &str) -> Result<Option<JobOutcome>, ConnectorError> {
    match status.get("status").and_then(Value::as_str) {
        Some("completed") => Ok(Some(JobOutcome {
            results: results(status),
            completed: true,
        })),
        Some("failed") => {
            let r = results(status);
            if !r.is_empty() {
                return Ok(Some(JobOutcome {
                    results: r,
                    completed: false,
                }));
            }
            let message = status.get("message").and_then(Value::as_str).unwrap_or("");
            Err(ConnectorError::Permanent {
                detail: format!("zendesk job {id} failed: {message}"),
                status: None,
                body: Some(status.to_string()),
            })
        }
        Some("queued" | "working") => Ok(None),
        other => Err(malformed(&format!("job {id} has status {other:?}"))),
    }
}

fn results(status: &Value) -> Vec<Value> {
    status
        .get("results")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

pub fn malformed(what: &str) -> ConnectorError {
    ConnectorError::Permanent {
        detail: format!("malformed zendesk answer: {what}"),
        status: None,
        body: None,
    }
}

/// `now + d`, or a year from now when `d` would overflow the clock.
fn after_now(d: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use serde_json::json;

    #[test]
    fn error_bodies_are_described_in_both_shapes() {
        let old = json!({"error": "RecordInvalid", "description": "Record validation errors",
            "details": {"email": [{"description": "is invalid"}]}});
        let d = describe_error(Some(&old)).unwrap();
        assert!(
            d.starts_with("RecordInvalid: Record validation errors ("),
            "{d}"
        );
        let new = json!({"errors": [{"code": "InvalidPagination", "detail": "too deep"}]});
        assert_eq!(
            describe_error(Some(&new)).unwrap(),
            "InvalidPagination: too deep"
        );
    }

    #[test]
    fn too_many_jobs_is_told_apart_from_rate_limits() {
        let p = ZendeskPolicy {
            exports: Arc::new(AccountLimiter::new(Limits::new(
                10,
                Duration::from_secs(60),
            ))),
        };
        let body = br#"{"error":"TooManyJobs","description":"Try again later."}"#;
        let e = p.classify(429, &HeaderMap::new(), body).unwrap();
        assert!(matches!(e, ConnectorError::Transient(m) if m.starts_with(TOO_MANY_JOBS)));
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        let e = p.classify(429, &h, b"{}").unwrap();
        assert_eq!(
            e,
            ConnectorError::RateLimited {
                retry_after: Some(Duration::from_secs(7)),
                scope: LimitScope::Burst
            }
        );
    }

    #[test]
    fn exhausted_headers_pause() {
        let p = ZendeskPolicy {
            exports: Arc::new(AccountLimiter::new(Limits::new(
                10,
                Duration::from_secs(60),
            ))),
        };
        let mut h = HeaderMap::new();
        h.insert("ratelimit-remaining", HeaderValue::from_static("0"));
        h.insert("ratelimit-reset", HeaderValue::from_static("41"));
        assert_eq!(p.observe(&h), Some(Duration::from_secs(41)));
        let mut h = HeaderMap::new();
        h.insert(
            "zendesk-ratelimit-incremental-exports-cursor",
            HeaderValue::from_static("total=20; remaining=0; resets=12"),
        );
        assert_eq!(
            header_pair(&h, "zendesk-ratelimit-incremental-exports-cursor"),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            p.observe(&h),
            None,
            "an exhausted export budget does not pause the account"
        );
        h.insert(
            "zendesk-ratelimit-incremental-exports-cursor",
            HeaderValue::from_static("total=20; remaining=0; resets=18446744073709551615"),
        );
        assert_eq!(
            header_pair(&h, "zendesk-ratelimit-incremental-exports-cursor"),
            Some(revsync_sdk::MAX_UPSTREAM_WAIT)
        );
        // Reaches the exports limiter's clock: clamped, not a panic.
        assert_eq!(p.observe(&h), None);
    }

    /// Polls `take` once: the slot if one is free now.
    fn try_take(slots: &Arc<JobSlots>) -> Option<Slot> {
        use std::future::Future;
        let mut take = std::pin::pin!(slots.clone().take());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match take.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(slot) => Some(slot),
            std::task::Poll::Pending => None,
        }
    }

    #[test]
    fn a_slot_zendesk_has_freed_is_ours_again_before_any_read() {
        let slots = Arc::new(JobSlots::new(2));
        let mut a = try_take(&slots).unwrap();
        a.answered(Some("total=30; remaining=29; resets=60"));
        let mut b = try_take(&slots).unwrap();
        assert!(try_take(&slots).is_none(), "two jobs, cap two");
        // B's answer: one job runs on the account, B's own. A has finished at Zendesk,
        // though no read has said so.
        b.answered(Some("total=30; remaining=29; resets=60"));
        assert_eq!(slots.running(), 1);
        let c = try_take(&slots).expect("the slot A held is free again");
        assert!(try_take(&slots).is_none(), "B and C run: the cap holds");
        drop((a, b, c));
        assert_eq!(slots.running(), 0);
    }

    #[test]
    fn a_submit_the_header_may_not_count_keeps_its_slot() {
        let slots = Arc::new(JobSlots::new(2));
        let mut a = try_take(&slots).unwrap();
        // B is sent before A's answer comes: A's header may have been made before B
        // reached Zendesk.
        let _b = try_take(&slots).unwrap();
        a.answered(Some("total=30; remaining=29; resets=60"));
        assert_eq!(
            slots.running(),
            2,
            "A, and B which the header may not count"
        );
        assert!(try_take(&slots).is_none());
        // Another integration's jobs are never counted as ours freed.
        a.answered(Some("total=30; remaining=0; resets=60"));
        assert_eq!(slots.running(), 2);
    }

    #[test]
    fn without_the_header_a_slot_is_held_until_its_job_is_read() {
        let slots = Arc::new(JobSlots::new(1));
        let mut a = try_take(&slots).unwrap();
        a.answered(None);
        assert!(try_take(&slots).is_none());
        drop(a);
        assert!(try_take(&slots).is_some());
    }

    #[test]
    fn the_inflight_header_is_parsed() {
        assert_eq!(
            inflight_jobs("total=30; remaining=29; resets=60"),
            Some((30, 29))
        );
        assert_eq!(inflight_jobs("total=30"), None);
    }
}
