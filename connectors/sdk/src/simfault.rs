//! Fault injection for the API simulators (feature `sim`): throttles, server errors,
//! stalls and cut-short answers, drawn per request from a seeded plan.
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
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// How often each fault happens: probabilities per request, in `0.0..=1.0`.
///
/// One number is drawn per request and compared against the probabilities in field order
/// (throttle, server error, stall, malformed), so they should add up to at most 1; past
/// that, the later kinds get only what is left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultPlan {
    /// Chance that a request starts a burst of throttled answers.
    pub throttle: f64,
    pub server_error: f64,
    pub stall: f64,
    pub malformed: f64,
    /// Requests one drawn throttle refuses, itself included: rate limits come in runs, and
    /// a client that retries at once must meet the next refusal too. 0 counts as 1.
    pub throttle_burst: u32,
    /// How long a stalled answer is held after the handler ran; longer than the client's
    /// timeout makes the client give up on work that was done.
    pub stall_for: Duration,
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
            throttle_burst: 1,
            stall_for: Duration::ZERO,
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
}

/// Faults injected since the simulator started (not reset by `set` or `clear`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub throttled: u64,
    pub server_errors: u64,
    pub stalled: u64,
    pub malformed: u64,
}

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
        let odds = [p.throttle, p.server_error, p.stall, p.malformed].map(|x| x.max(0.0));
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
        }
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
    let Some(fault) = faults.draw() else {
        return next.run(req).await;
    };
    tracing::debug!(?fault, method = %req.method(), path = %req.uri().path(), "simulated fault");
    match fault {
        Fault::Throttle | Fault::ServerError => (faults.respond)(fault),
        Fault::Stall(hold) => {
            let answer = next.run(req).await;
            tokio::time::sleep(hold).await;
            answer
        }
        Fault::Malformed => first_half(next.run(req).await).await,
    }
}

/// The same answer with its body cut to the first half, as when a connection drops
/// mid-body: the status says success, the JSON ends early.
async fn first_half(answer: Response) -> Response {
    let (mut parts, body) = answer.into_parts();
    // Simulator bodies are small and built in memory: nothing to stream.
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
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
            throttle_burst: 3,
            stall_for: Duration::from_millis(5),
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
            }
        }
        assert_eq!(f.counts(), want);
        assert!(want.throttled > 0 && want.server_errors > 0 && want.stalled > 0);
        assert!(want.malformed > 0);
    }

    const BODY: &str = r#"{"id":"42","name":"a record that was created"}"#;

    #[tokio::test]
    async fn the_middleware_refuses_stalls_and_cuts_over_real_http() {
        let ran = Arc::new(AtomicU64::new(0));
        let faults = plain();
        let handler = {
            let ran = ran.clone();
            move || {
                let ran = ran.clone();
                async move {
                    ran.fetch_add(1, Ordering::SeqCst);
                    (
                        StatusCode::CREATED,
                        [(CONTENT_TYPE, "application/json")],
                        BODY,
                    )
                }
            }
        };
        let app = Router::new()
            .route("/things", get(handler))
            .layer(axum::middleware::from_fn_with_state(faults.clone(), inject));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/things", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
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
                malformed: 1
            }
        );
    }
}
