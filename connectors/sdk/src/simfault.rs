//! Fault injection for the API simulators (feature `sim`): throttles, server errors,
//! stalls, cut-short and oversized answers, drawn per request from a seeded plan; and
//! poison, which stays until removed: requests refused forever and records served broken.
//!
//! A chaos test runs the daemon against simulators that misbehave for a while and expects
//! the same final state as a run without faults. Each simulator wraps its router in
//! [`inject`] and says, through the `respond` function given to [`Faults::new`], what its
//! API's throttle and server error look like; the plan decides how often each happens.
//!
//! Throttles and server errors answer before the handler runs: a real API refuses work it
//! never started, so a retry is plainly safe. Stalls and malformed answers run the handler
//! first: the work is done (a record was created) but the client cannot tell, because it
//! gave up waiting or could not read the answer. Those two are the ambiguous outcomes a
//! retried create must survive without making a second record.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

/// How often each fault happens: probabilities per request, in `0.0..=1.0`.
///
/// One number is drawn per request and compared against the probabilities in field order
/// (throttle, server error, stall, malformed, oversized), so they should add up to at most
/// 1; past that, the later kinds get only what is left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultPlan {
    /// Chance that a request starts a burst of throttled answers.
    pub throttle: f64,
    pub server_error: f64,
    pub stall: f64,
    pub malformed: f64,
    pub oversized: f64,
    /// Requests one drawn throttle refuses, itself included: rate limits come in runs, and
    /// a client that retries at once must meet the next refusal too. 0 counts as 1.
    pub throttle_burst: u32,
    /// How long a stalled answer is held after the handler ran; longer than the client's
    /// timeout makes the client give up on work that was done.
    pub stall_for: Duration,
    /// The size an oversized answer is padded to, in bytes (never shrunk below the body).
    pub oversize_to: usize,
    /// The same seed gives the same sequence of faults, so a failing run can be replayed.
    pub seed: u64,
}

impl Default for FaultPlan {
    /// No faults.
    fn default() -> Self {
        Self {
            throttle: 0.0,
            server_error: 0.0,
            stall: 0.0,
            malformed: 0.0,
            oversized: 0.0,
            throttle_burst: 1,
            stall_for: Duration::ZERO,
            oversize_to: 0,
            seed: 0,
        }
    }
}

/// One injected misbehaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The API's rate-limit answer; the handler does not run.
    Throttle,
    /// The API's server error; the handler does not run.
    ServerError,
    /// The handler runs, then the answer is held this long.
    Stall(Duration),
    /// The handler runs, then only the first half of its body is sent.
    Malformed,
    /// The handler runs, then its body is padded with whitespace to this many bytes.
    Oversized(usize),
}

/// Faults injected since the simulator started (not reset by `set` or `clear`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub throttled: u64,
    pub server_errors: u64,
    pub stalled: u64,
    pub malformed: u64,
    pub oversized: u64,
    /// Requests refused by a [`Refusal`].
    pub refused: u64,
    /// Answers in which a [`Corrupt`] rule broke at least one record.
    pub corrupted: u64,
}

/// Sums the counts of several simulators.
impl std::ops::AddAssign for FaultCounts {
    fn add_assign(&mut self, o: Self) {
        self.throttled += o.throttled;
        self.server_errors += o.server_errors;
        self.stalled += o.stalled;
        self.malformed += o.malformed;
        self.oversized += o.oversized;
        self.refused += o.refused;
        self.corrupted += o.corrupted;
    }
}

/// A push the system refuses forever: every request whose body (or path and query)
/// contains `marker` gets this answer, and the handler never runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub marker: String,
    pub status: StatusCode,
    /// JSON, in the system's own error shape.
    pub body: String,
}

/// Rewrites one JSON answer in place (the request's path, the parsed body); true when it
/// changed something. Runs on every JSON answer while set.
pub type Corrupt = Arc<dyn Fn(&str, &mut serde_json::Value) -> bool + Send + Sync>;

/// The plan and the random state drawing from it.
struct Dice {
    plan: FaultPlan,
    rng: fastrand::Rng,
    /// Throttled answers still owed by the current burst.
    burst_left: u32,
    counts: FaultCounts,
}

impl Dice {
    fn roll(&mut self) -> Option<Fault> {
        if self.burst_left > 0 {
            self.burst_left -= 1;
            return Some(Fault::Throttle);
        }
        let p = self.plan;
        // `max` also turns NaN into 0.
        let odds = [
            p.throttle,
            p.server_error,
            p.stall,
            p.malformed,
            p.oversized,
        ]
        .map(|x| x.max(0.0));
        if odds.iter().all(|x| *x == 0.0) {
            return None;
        }
        let roll = self.rng.f64();
        let mut edge = 0.0;
        let kinds = [
            Fault::Throttle,
            Fault::ServerError,
            Fault::Stall(p.stall_for),
            Fault::Malformed,
            Fault::Oversized(p.oversize_to),
        ];
        for (odd, kind) in odds.into_iter().zip(kinds) {
            edge += odd;
            if roll < edge {
                if kind == Fault::Throttle {
                    self.burst_left = p.throttle_burst.saturating_sub(1);
                }
                return Some(kind);
            }
        }
        None
    }
}

type Respond = dyn Fn(Fault) -> Response + Send + Sync;

/// A simulator's fault switch, shared by its middleware and the test driving it. Cheap to
/// clone: clones share the plan, the random state and the counts.
#[derive(Clone)]
pub struct Faults {
    dice: Arc<Mutex<Dice>>,
    respond: Arc<Respond>,
    poison: Arc<Mutex<Poison>>,
}

#[derive(Default)]
struct Poison {
    refusals: Vec<Refusal>,
    corrupt: Option<Corrupt>,
}

impl Faults {
    /// No faults until [`Faults::set`]. `respond` builds the system's own answer for
    /// [`Fault::Throttle`] and [`Fault::ServerError`] (status, headers, error body); it is
    /// called without any lock of ours held, so it may read the simulator's state.
    pub fn new(respond: impl Fn(Fault) -> Response + Send + Sync + 'static) -> Self {
        let plan = FaultPlan::default();
        Self {
            dice: Arc::new(Mutex::new(Dice {
                rng: fastrand::Rng::with_seed(plan.seed),
                plan,
                burst_left: 0,
                counts: FaultCounts::default(),
            })),
            respond: Arc::new(respond),
            poison: Arc::default(),
        }
    }

    fn poison(&self) -> std::sync::MutexGuard<'_, Poison> {
        self.poison.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a request refused forever (until [`Faults::clear_poison`]).
    pub fn refuse(&self, refusal: Refusal) {
        self.poison().refusals.push(refusal);
    }

    /// Serves records broken by `rule` in every JSON answer (until [`Faults::clear_poison`]).
    pub fn corrupt(
        &self,
        rule: impl Fn(&str, &mut serde_json::Value) -> bool + Send + Sync + 'static,
    ) {
        self.poison().corrupt = Some(Arc::new(rule));
    }

    /// Removes every refusal and corruption rule.
    pub fn clear_poison(&self) {
        *self.poison() = Poison::default();
    }

    fn count(&self, f: impl FnOnce(&mut FaultCounts)) {
        f(&mut self.lock().counts);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Dice> {
        self.dice.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts injecting by `plan`, from the beginning of its seed's sequence.
    pub fn set(&self, plan: FaultPlan) {
        let mut d = self.lock();
        d.rng = fastrand::Rng::with_seed(plan.seed);
        d.plan = plan;
        d.burst_left = 0;
    }

    /// Stops injecting, a throttle burst in progress included.
    pub fn clear(&self) {
        let mut d = self.lock();
        d.plan = FaultPlan::default();
        d.burst_left = 0;
    }

    pub fn plan(&self) -> FaultPlan {
        self.lock().plan
    }

    /// The fault for the next request, if any; counted as injected.
    pub fn draw(&self) -> Option<Fault> {
        let mut d = self.lock();
        let fault = d.roll()?;
        let c = &mut d.counts;
        match fault {
            Fault::Throttle => c.throttled += 1,
            Fault::ServerError => c.server_errors += 1,
            Fault::Stall(_) => c.stalled += 1,
            Fault::Malformed => c.malformed += 1,
            Fault::Oversized(_) => c.oversized += 1,
        }
        Some(fault)
    }

    pub fn counts(&self) -> FaultCounts {
        self.lock().counts
    }
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.lock();
        f.debug_struct("Faults")
            .field("plan", &d.plan)
            .field("counts", &d.counts)
            .finish()
    }
}

/// The middleware: `router.layer(axum::middleware::from_fn_with_state(faults.clone(), inject))`.
pub async fn inject(State(faults): State<Faults>, req: Request, next: Next) -> Response {
    let (refusals, corrupt) = {
        let p = faults.poison();
        (
            (!p.refusals.is_empty()).then(|| p.refusals.clone()),
            p.corrupt.clone(),
        )
    };
    let req = match refusals {
        Some(rules) => match refused(req, &rules).await {
            Ok(req) => req,
            Err(answer) => {
                faults.count(|c| c.refused += 1);
                return answer;
            }
        },
        None => req,
    };
    let path = req.uri().path().to_owned();
    let fault = faults.draw();
    if let Some(fault) = fault {
        tracing::debug!(?fault, method = %req.method(), %path, "simulated fault");
        if matches!(fault, Fault::Throttle | Fault::ServerError) {
            return (faults.respond)(fault);
        }
    }
    let mut answer = next.run(req).await;
    if let Some(rule) = corrupt {
        let (broken, a) = corrupted(answer, &path, rule.as_ref()).await;
        answer = a;
        if broken {
            faults.count(|c| c.corrupted += 1);
        }
    }
    match fault {
        Some(Fault::Stall(hold)) => {
            tokio::time::sleep(hold).await;
            answer
        }
        Some(Fault::Malformed) => first_half(answer).await,
        Some(Fault::Oversized(to)) => padded(answer, to).await,
        _ => answer,
    }
}

/// The request back, or the refusal's answer when it carries a refused marker.
async fn refused(req: Request, rules: &[Refusal]) -> Result<Request, Response> {
    let (parts, body) = req.into_parts();
    // Simulator requests are small and built in memory.
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or_default();
    let hit = rules.iter().find(|r| {
        !r.marker.is_empty()
            && (target.contains(&r.marker)
                || bytes
                    .windows(r.marker.len())
                    .any(|w| w == r.marker.as_bytes()))
    });
    match hit {
        Some(r) => Err(Response::builder()
            .status(r.status)
            .header(CONTENT_TYPE, "application/json")
            .body(Body::from(r.body.clone()))
            .unwrap_or_default()),
        None => Ok(Request::from_parts(parts, Body::from(bytes))),
    }
}

async fn body_bytes(answer: Response) -> (axum::http::response::Parts, axum::body::Bytes) {
    let (parts, body) = answer.into_parts();
    // Simulator bodies are small and built in memory: nothing to stream.
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    (parts, bytes)
}

/// The answer with `rule` applied to its JSON body; whether it changed anything.
async fn corrupted(
    answer: Response,
    path: &str,
    rule: &(dyn Fn(&str, &mut serde_json::Value) -> bool + Send + Sync),
) -> (bool, Response) {
    let (mut parts, bytes) = body_bytes(answer).await;
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return (false, Response::from_parts(parts, Body::from(bytes)));
    };
    if !rule(path, &mut v) {
        return (false, Response::from_parts(parts, Body::from(bytes)));
    }
    let out = serde_json::to_vec(&v).unwrap_or_default();
    parts.headers.remove(CONTENT_LENGTH);
    (true, Response::from_parts(parts, Body::from(out)))
}

/// The same answer padded with trailing spaces to `to` bytes: valid JSON, far too big.
async fn padded(answer: Response, to: usize) -> Response {
    let (mut parts, bytes) = body_bytes(answer).await;
    let mut big = Vec::with_capacity(to.max(bytes.len()));
    big.extend_from_slice(&bytes);
    big.resize(to.max(bytes.len()), b' ');
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(big))
}

/// The same answer with its body cut to the first half, as when a connection drops
/// mid-body: the status says success, the JSON ends early.
async fn first_half(answer: Response) -> Response {
    let (mut parts, bytes) = body_bytes(answer).await;
    let half = bytes.slice(..bytes.len() / 2);
    // The length of the whole body would make the client wait for the rest.
    parts.headers.remove(CONTENT_LENGTH);
    if !half.is_empty() && !parts.headers.contains_key(CONTENT_TYPE) {
        parts
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    Response::from_parts(parts, Body::from(half))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use axum::Router;

    use super::*;

    fn plain() -> Faults {
        Faults::new(|f| match f {
            Fault::Throttle => (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response(),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
        })
    }

    fn mixed(seed: u64) -> FaultPlan {
        FaultPlan {
            throttle: 0.1,
            server_error: 0.1,
            stall: 0.1,
            malformed: 0.1,
            oversized: 0.1,
            throttle_burst: 3,
            stall_for: Duration::from_millis(5),
            oversize_to: 64,
            seed,
        }
    }

    fn draws(f: &Faults, n: usize) -> Vec<Option<Fault>> {
        (0..n).map(|_| f.draw()).collect()
    }

    #[test]
    fn the_same_seed_draws_the_same_faults() {
        let (a, b) = (plain(), plain());
        a.set(mixed(7));
        b.set(mixed(7));
        let first = draws(&a, 500);
        assert_eq!(first, draws(&b, 500));
        assert!(first.iter().any(Option::is_some) && first.iter().any(Option::is_none));
        // Setting the plan again starts its sequence over.
        a.set(mixed(7));
        assert_eq!(first, draws(&a, 500));
        b.set(mixed(8));
        assert_ne!(first, draws(&b, 500));
    }

    #[test]
    fn a_drawn_throttle_refuses_the_whole_burst() {
        let f = plain();
        f.set(FaultPlan {
            throttle: 0.05,
            throttle_burst: 4,
            ..FaultPlan::default()
        });
        let seq = draws(&f, 10_000);
        let first = seq.iter().position(Option::is_some).expect("some throttle");
        assert!(seq[first..first + 4]
            .iter()
            .all(|d| *d == Some(Fault::Throttle)));
        // Bursts may touch (a new one drawn right after the last ended), never stop short.
        let mut run = 0;
        for d in seq.iter().chain([&None]) {
            match d {
                Some(Fault::Throttle) => run += 1,
                Some(other) => panic!("only throttles were planned, drew {other:?}"),
                None => {
                    assert_eq!(run % 4, 0, "a burst of {run}");
                    run = 0;
                }
            }
        }
        let n = seq.iter().filter(|d| d.is_some()).count() as u64;
        assert_eq!(f.counts().throttled, n);
    }

    #[test]
    fn clear_stops_faults_mid_burst_and_counts_remain() {
        let f = plain();
        f.set(FaultPlan {
            throttle: 1.0,
            throttle_burst: 100,
            ..FaultPlan::default()
        });
        assert_eq!(f.draw(), Some(Fault::Throttle));
        f.clear();
        assert!(draws(&f, 1000).iter().all(Option::is_none));
        assert_eq!(f.plan(), FaultPlan::default());
        assert_eq!(f.counts().throttled, 1);
    }

    #[test]
    fn the_default_plan_draws_nothing() {
        let f = plain();
        assert!(draws(&f, 1000).iter().all(Option::is_none));
        f.set(FaultPlan {
            seed: 99,
            ..FaultPlan::default()
        });
        assert!(draws(&f, 1000).iter().all(Option::is_none));
        assert_eq!(f.counts(), FaultCounts::default());
    }

    #[test]
    fn counts_match_what_was_drawn() {
        let f = plain();
        f.set(mixed(3));
        let mut want = FaultCounts::default();
        for d in draws(&f, 2000).into_iter().flatten() {
            match d {
                Fault::Throttle => want.throttled += 1,
                Fault::ServerError => want.server_errors += 1,
                Fault::Stall(d) => {
                    assert_eq!(d, Duration::from_millis(5));
                    want.stalled += 1
                }
                Fault::Malformed => want.malformed += 1,
                Fault::Oversized(n) => {
                    assert_eq!(n, 64);
                    want.oversized += 1
                }
            }
        }
        assert_eq!(f.counts(), want);
        assert!(want.throttled > 0 && want.server_errors > 0 && want.stalled > 0);
        assert!(want.malformed > 0 && want.oversized > 0);
    }

    const BODY: &str = r#"{"id":"42","name":"a record that was created"}"#;

    /// A one-route server behind the middleware: its URL and how often the handler ran.
    async fn serve(faults: &Faults) -> (String, Arc<AtomicU64>) {
        let ran = Arc::new(AtomicU64::new(0));
        let handler = {
            let ran = ran.clone();
            move |body: String| {
                let ran = ran.clone();
                async move {
                    ran.fetch_add(1, Ordering::SeqCst);
                    let answer = if body.is_empty() {
                        BODY.to_owned()
                    } else {
                        body
                    };
                    (
                        StatusCode::CREATED,
                        [(CONTENT_TYPE, "application/json")],
                        answer,
                    )
                }
            }
        };
        let app = Router::new()
            .route("/things", get(handler.clone()).post(handler))
            .layer(axum::middleware::from_fn_with_state(faults.clone(), inject));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/things", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, ran)
    }

    #[tokio::test]
    async fn the_middleware_refuses_stalls_and_cuts_over_real_http() {
        let faults = plain();
        let (url, ran) = serve(&faults).await;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let only = |p: FaultPlan| FaultPlan {
            stall_for: Duration::from_secs(2),
            ..p
        };

        // Refusals: the system's answer, and the handler never ran.
        faults.set(only(FaultPlan {
            throttle: 1.0,
            ..FaultPlan::default()
        }));
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.text().await.unwrap(), "slow down");
        faults.set(only(FaultPlan {
            server_error: 1.0,
            ..FaultPlan::default()
        }));
        assert_eq!(http.get(&url).send().await.unwrap().status(), 500);
        assert_eq!(ran.load(Ordering::SeqCst), 0);

        // A stall: the client gives up, the work was done.
        faults.set(only(FaultPlan {
            stall: 1.0,
            ..FaultPlan::default()
        }));
        let e = http.get(&url).send().await.unwrap_err();
        assert!(e.is_timeout(), "{e}");
        assert_eq!(ran.load(Ordering::SeqCst), 1);

        // Malformed: the same status and type, half the body, the work done.
        faults.set(only(FaultPlan {
            malformed: 1.0,
            ..FaultPlan::default()
        }));
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        let body = r.bytes().await.unwrap();
        assert_eq!(&body[..], &BODY.as_bytes()[..BODY.len() / 2]);
        let parsed = serde_json::from_slice::<serde_json::Value>(&body).unwrap_err();
        assert!(parsed.is_eof(), "{parsed}");
        assert_eq!(ran.load(Ordering::SeqCst), 2);

        faults.clear();
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), BODY);
        assert_eq!(
            faults.counts(),
            FaultCounts {
                throttled: 1,
                server_errors: 1,
                stalled: 1,
                malformed: 1,
                ..FaultCounts::default()
            }
        );
    }

    #[tokio::test]
    async fn an_oversized_answer_is_whole_valid_json_past_the_size() {
        let faults = plain();
        let (url, ran) = serve(&faults).await;
        faults.set(FaultPlan {
            oversized: 1.0,
            oversize_to: 3 << 20,
            ..FaultPlan::default()
        });
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status(), 201);
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len(), 3 << 20);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], "42");
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert_eq!(faults.counts().oversized, 1);
    }

    #[tokio::test]
    async fn poison_outlives_clear_and_touches_only_its_records() {
        let faults = plain();
        let (url, ran) = serve(&faults).await;
        faults.refuse(Refusal {
            marker: "PoisonPill".into(),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: r#"{"error":"refused"}"#.into(),
        });
        faults.corrupt(|path, v| {
            assert_eq!(path, "/things");
            let hit = v["id"] == "7";
            if hit {
                v["updated_at"] = "not a time".into();
            }
            hit
        });
        faults.clear();
        let http = reqwest::Client::new();
        for _ in 0..3 {
            let r = http
                .post(&url)
                .body(r#"{"name":"a PoisonPill inside"}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 422);
            assert_eq!(r.text().await.unwrap(), r#"{"error":"refused"}"#);
        }
        assert_eq!(ran.load(Ordering::SeqCst), 0, "a refused push never runs");
        let fine = http.post(&url).body(r#"{"id":"8"}"#).send().await.unwrap();
        assert_eq!(fine.text().await.unwrap(), r#"{"id":"8"}"#);
        let broken = http.post(&url).body(r#"{"id":"7"}"#).send().await.unwrap();
        let v: serde_json::Value = broken.json().await.unwrap();
        assert_eq!(v["updated_at"], "not a time");
        let c = faults.counts();
        assert_eq!((c.refused, c.corrupted), (3, 1));

        faults.clear_poison();
        let r = http.post(&url).body("PoisonPill").send().await.unwrap();
        assert_eq!(r.status(), 201);
    }
}
