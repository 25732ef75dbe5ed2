//! Stripe's test clocks (`/v1/test_helpers/test_clocks`): a frozen time that customers are
//! put on at creation, whose objects are created at that time and, when the clock is
//! advanced, live through everything due until the new time, in order, with events dated
//! by the clock (billing.rs does the billing). Deleting a clock deletes its customers.

use std::collections::{HashMap, HashSet};

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::billing::{self, field};
use super::{as_int, error, list, missing, new_id, put, unknown_param, State, Table};

/// Stripe deletes a test clock itself a week after its creation (`deletes_after` in its
/// API reference's examples is `created` + 604,800 s).
const LIFETIME_SECS: i64 = 7 * 86_400;

/// Steps one advance may run before the clock is declared failed rather than loop forever.
const MAX_STEPS: usize = 100_000;

const URL: &str = "/v1/test_helpers/test_clocks";

#[derive(Default)]
pub(super) struct Clocks {
    table: Table,
    /// Trialing subscriptions already told `trial_will_end`.
    pub(super) warned: HashSet<String>,
    /// Draft invoices of clocks' subscriptions, with when each is finalized and paid.
    pub(super) drafts: HashMap<String, i64>,
    /// Event id -> the wall time a clock's event was made at, dated as it is by the clock.
    made: HashMap<String, i64>,
}

impl Clocks {
    pub(super) fn note_event(&mut self, event: &Value, wall: i64) {
        if let Some(id) = event["id"].as_str() {
            self.made.insert(id.to_owned(), wall);
        }
    }

    /// When a clock's `event` was made by the wall's time, which its retention counts from.
    pub(super) fn made_at(&self, event: &Value) -> Option<i64> {
        self.made.get(event["id"].as_str()?).copied()
    }

    fn frozen_time(&self, clock: &str) -> Option<i64> {
        self.table.rows.get(clock)?["frozen_time"].as_i64()
    }
}

/// The test clock endpoints; `None` for every other path.
pub(super) fn dispatch(
    s: &mut State,
    method: &str,
    seg: &[&str],
    params: &Value,
    idem: Option<&str>,
) -> Option<(u16, Value)> {
    let ["v1", "test_helpers", "test_clocks", rest @ ..] = seg else {
        return None;
    };
    Some(match (method, rest) {
        ("POST", []) => create(s, params, idem),
        ("GET", []) => list(s.clocks.table.newest_first(), params, URL, |_| true),
        ("GET", [id]) => s
            .clocks
            .table
            .rows
            .get(*id)
            .map_or_else(|| missing("test clock", id), |c| (200, c.clone())),
        ("DELETE", [id]) => delete(s, id, idem),
        ("POST", [id, "advance"]) => advance(s, id, params, idem),
        _ => return None,
    })
}

/// The clock whose time a request on a customer or subscription happens at, with that time.
pub(super) fn governing(
    s: &State,
    method: &str,
    seg: &[&str],
    params: &Value,
) -> Option<(String, i64)> {
    let clock_of = |v: Option<&Value>| v.and_then(|v| v["test_clock"].as_str()).map(str::to_owned);
    let clock = match (method, seg) {
        ("POST", ["v1", "customers"]) => params["test_clock"].as_str().map(str::to_owned),
        ("POST", ["v1", "subscriptions"]) => clock_of(
            params["customer"]
                .as_str()
                .and_then(|c| s.customers.rows.get(c)),
        ),
        (_, ["v1", "subscriptions", id]) => clock_of(s.subscriptions.rows.get(*id)),
        (_, ["v1", "customers", id]) => clock_of(s.customers.rows.get(*id)),
        _ => None,
    }?;
    let frozen = s.clocks.frozen_time(&clock)?;
    Some((clock, frozen))
}

/// Splits `test_clock` off the parameters of a new customer, refusing a clock that is not
/// there.
pub(super) fn take_test_clock(
    s: &State,
    params: &Value,
) -> Result<(Value, Option<String>), (u16, Value)> {
    let mut rest = params.clone();
    let Some(clock) = rest.as_object_mut().and_then(|m| m.remove("test_clock")) else {
        return Ok((rest, None));
    };
    let clock = clock.as_str().unwrap_or_default().to_owned();
    if s.clocks.frozen_time(&clock).is_none() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such test clock: '{clock}'"),
            Some("test_clock"),
        ));
    }
    Ok((rest, Some(clock)))
}

fn frozen_time_param(params: &Value) -> Result<i64, (u16, Value)> {
    as_int(&params["frozen_time"]).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_missing"),
            "Missing required param: frozen_time.",
            Some("frozen_time"),
        )
    })
}

fn create(s: &mut State, params: &Value, idem: Option<&str>) -> (u16, Value) {
    if let Some(e) = unknown_param(params, &["frozen_time", "name", "expand"]) {
        return e;
    }
    let frozen = match frozen_time_param(params) {
        Ok(t) => t,
        Err(refused) => return refused,
    };
    let now = s.now();
    let id = new_id("clock");
    let clock = json!({
        "id": id, "object": "test_helpers.test_clock", "created": now,
        "deletes_after": now + LIFETIME_SECS, "frozen_time": frozen, "livemode": false,
        "name": params["name"].as_str(), "status": "ready", "status_details": {},
    });
    let seq = s.next_seq();
    s.clocks.table.insert(&id, clock.clone(), seq);
    s.emit("test_helpers.test_clock.created", &clock, None, idem);
    (200, clock)
}

/// Runs everything due up to `frozen_time` and answers as Stripe does when an advance
/// starts: the clock still at its old time, `advancing` towards the new one. Done here
/// before the answer, so the next read finds it `ready`.
fn advance(s: &mut State, id: &str, params: &Value, idem: Option<&str>) -> (u16, Value) {
    if let Some(e) = unknown_param(params, &["frozen_time", "expand"]) {
        return e;
    }
    let Some(clock) = s.clocks.table.rows.get(id).cloned() else {
        return missing("test clock", id);
    };
    let target = match frozen_time_param(params) {
        Ok(t) => t,
        Err(refused) => return refused,
    };
    let frozen = field(&clock, "/frozen_time").as_i64().unwrap_or(target);
    let refuse = |message: String| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            &message,
            Some("frozen_time"),
        )
    };
    let status = field(&clock, "/status").as_str().unwrap_or_default();
    if status != "ready" {
        return refuse(format!(
            "The test clock {id} cannot be advanced while its status is {status}."
        ));
    }
    if target <= frozen {
        return refuse(format!(
            "The frozen_time must be after the test clock's current frozen_time ({frozen})."
        ));
    }
    let furthest = billing::advance_limit(s, id, frozen);
    if target > furthest {
        return refuse(format!(
            "The test clock cannot be advanced more than two intervals of its shortest subscription at a time: the frozen_time can be at most {furthest}."
        ));
    }
    let mut advancing = clock;
    put(&mut advancing, "status", json!("advancing"));
    put(
        &mut advancing,
        "status_details",
        json!({"advancing": {"target_frozen_time": target}}),
    );
    s.emit("test_helpers.test_clock.advancing", &advancing, None, idem);
    let mut steps = 0;
    while let Some((at, step)) = billing::next_step(s, id).filter(|(at, _)| *at <= target) {
        steps += 1;
        if steps > MAX_STEPS {
            break;
        }
        s.under_clock = Some((id.to_owned(), at.max(frozen)));
        billing::apply(s, step);
    }
    s.under_clock = None;
    let (status, event) = if steps > MAX_STEPS {
        (
            "internal_failure",
            "test_helpers.test_clock.internal_failure",
        )
    } else {
        ("ready", "test_helpers.test_clock.ready")
    };
    let mut done = advancing.clone();
    put(&mut done, "frozen_time", json!(target));
    put(&mut done, "status", json!(status));
    put(&mut done, "status_details", json!({}));
    s.clocks.table.rows.insert(id.to_owned(), done.clone());
    s.emit(event, &done, None, None);
    (200, advancing)
}

/// Deletes the clock and, as Stripe does, every customer on it with their subscriptions and
/// invoices.
fn delete(s: &mut State, id: &str, idem: Option<&str>) -> (u16, Value) {
    let Some(clock) = s.clocks.table.rows.get(id).cloned() else {
        return missing("test clock", id);
    };
    s.under_clock = field(&clock, "/frozen_time")
        .as_i64()
        .map(|t| (id.to_owned(), t));
    let on_clock = |t: &Table| -> Vec<String> {
        t.rows
            .iter()
            .filter(|(_, v)| v["test_clock"] == id)
            .map(|(k, _)| k.clone())
            .collect()
    };
    for sub_id in on_clock(&s.subscriptions) {
        s.clocks.warned.remove(&sub_id);
        if let Some(mut sub) = s.subscriptions.rows.remove(&sub_id) {
            if field(&sub, "/status") != "canceled" {
                put(&mut sub, "status", json!("canceled"));
                put(&mut sub, "ended_at", json!(s.op_now()));
                put(&mut sub, "canceled_at", json!(s.op_now()));
                s.emit("customer.subscription.deleted", &sub, None, idem);
            }
        }
    }
    for invoice in on_clock(&s.invoices) {
        s.clocks.drafts.remove(&invoice);
        s.invoices.rows.remove(&invoice);
    }
    for customer in on_clock(&s.customers) {
        if let Some(c) = s.customers.rows.remove(&customer) {
            let gone = json!({"id": customer, "object": "customer", "deleted": true});
            s.customers.deleted.insert(customer, gone);
            s.emit("customer.deleted", &c, None, idem);
        }
    }
    s.under_clock = None;
    s.clocks.table.rows.remove(id);
    s.emit("test_helpers.test_clock.deleted", &clock, None, idem);
    (
        200,
        json!({"id": id, "object": "test_helpers.test_clock", "deleted": true}),
    )
}
