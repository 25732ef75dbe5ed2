//! Stripe connector (customers, subscriptions, invoices).
//!
//! Reads backfill through the list endpoints, then follow the Events API from a
//! (created, ids-at-that-second) cursor; a cursor older than Stripe's 30-day event
//! retention starts a full re-read instead of silently skipping what expired.
//!
//! A read of subscriptions from the beginning (the first sync, or a re-read) also gives
//! each subscription's past, dated as Stripe dates it (`history.rs`): its status timeline
//! from its own timestamps and its MRR from its invoices, one `GET /v1/invoices?subscription=`
//! per subscription (more for over 100 invoices) plus one `GET /v1/prices/{id}` per price
//! an invoice names that is no longer on a subscription of the page.

pub mod client;
pub mod config;
pub mod describe;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod history;
pub mod mapping;
#[cfg(feature = "sim")]
pub mod sim;
pub mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use revsync_sdk::http::{LimiterStats, Limits};
use revsync_sdk::Shutdown;
use revsync_sdk::{
    BuildContext, Capabilities, Change, Connector, ConnectorError, ConnectorType, Fetched, Kind,
    ObjectCapability, ParamError, PushItem, PushOp, PushResult, WebhookError, WebhookEvent,
    WebhookRequest,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::client::{form_encode, List, StripeClient};
use crate::config::{CustomersAs, StripeParams};

/// Stripe keeps events for 30 days.
pub const EVENTS_RETENTION_SECS: i64 = 30 * 24 * 3600;
/// A cursor this close to expiry is treated as expired: paging through a large backlog
/// takes time, and the oldest events would vanish under it.
const RETENTION_MARGIN_SECS: i64 = 3600;
/// The events window starts this long before the backfill did, absorbing clock skew
/// between us and Stripe; replayed events are older than the backfilled state and
/// cannot regress it.
const BACKFILL_OVERLAP_SECS: i64 = 300;
/// Events pages read in one scan before the time window is narrowed.
const MAX_SCAN_PAGES: usize = 20;
const PAGE: &str = "100";

/// The `stripe` connector type.
pub struct Stripe;

impl ConnectorType for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn objects(&self) -> &'static [(&'static str, Kind)] {
        &[
            ("customers", Kind::Organization),
            ("subscriptions", Kind::Subscription),
            ("invoices", Kind::Invoice),
        ]
    }

    fn validate_params(&self, params: &serde_json::Value) -> Result<(), Vec<ParamError>> {
        config::StripeParams::from_value(params).map(|_| ())
    }

    fn params_example(&self) -> &'static str {
        "params:\n  secret_key: ${STRIPE_SECRET_KEY}\n  webhook_secret: ${STRIPE_WEBHOOK_SECRET}"
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Option<Result<Arc<dyn Connector>, ConnectorError>> {
        let built = (|| {
            let params = StripeParams::from_value(ctx.params).map_err(|errors| {
                permanent(format!(
                    "connector `{}`: invalid params: {}",
                    ctx.id,
                    errors
                        .iter()
                        .map(|e| format!("{}: {}", e.path, e.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
            })?;
            let documented = Limits::new(params.requests_per_second(), Duration::from_secs(1));
            let overall = ctx
                .rate_limit
                .resolve(documented)
                .map_err(|e| permanent(format!("connector `{}`: {e}", ctx.id)))?;
            let max_body = ctx
                .http
                .max_response_bytes()
                .map_err(|e| permanent(format!("connector `{}`: {e}", ctx.id)))?;
            let c: Arc<dyn Connector> = Arc::new(
                StripeConnector::new(params, overall)?
                    .with_max_response_bytes(max_body)
                    .with_shutdown(&ctx.shutdown),
            );
            Ok(c)
        })();
        Some(built)
    }
}

fn permanent(detail: String) -> ConnectorError {
    ConnectorError::Permanent {
        detail,
        status: None,
        body: None,
    }
}

/// Where a read of one object stands; stored by the runtime as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Cursor {
    /// Paging a list endpoint newest-first; `started` is when the backfill began.
    Backfill {
        started: i64,
        after: Option<String>,
        /// Where the object's events stood on Stripe's clock as the backfill began: the
        /// newest event's second and every id of that second. The events the backfill's
        /// state already holds are not read again after it (issue 17: every record used
        /// to come twice, once listed and once from the events of the last 5 minutes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mark: Option<(i64, Vec<String>)>,
    },
    /// Following events: every event with `created` before this second, and those of
    /// this second named in `seen`, are applied. Event ids are not ordered, so the ids
    /// of the boundary second are kept rather than a strict `>` that would drop them;
    /// oldest first as listed, the newest last (`follow_events` asks Stripe for events
    /// newer than that one).
    Events { created: i64, seen: Vec<String> },
}

/// The last time a cursor had outlived the event log and a full re-read started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullReread {
    pub object: String,
    pub at: DateTime<Utc>,
    pub cursor_created: DateTime<Utc>,
}

/// What `/status` should show about this connector beyond the limiter figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StripeStatus {
    pub full_rereads: u64,
    pub last_full_reread: Option<FullReread>,
}

type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// A running Stripe connector.
pub struct StripeConnector {
    client: StripeClient,
    params: StripeParams,
    clock: Clock,
    status: Mutex<StripeStatus>,
}

/// The Dashboard page of a customer, subscription or invoice (test-mode keys open the
/// test-mode Dashboard); none against anything but Stripe's own API.
fn stripe_dashboard_url(p: &StripeParams, object: &str, id: &str) -> Option<String> {
    if p.base_url.trim_end_matches('/') != "https://api.stripe.com" || list_path(object).is_none() {
        return None;
    }
    let key = p.secret_key.expose();
    let mode = if key.starts_with("sk_test_") || key.starts_with("rk_test_") {
        "test/"
    } else {
        ""
    };
    Some(format!("https://dashboard.stripe.com/{mode}{object}/{id}"))
}

fn list_path(object: &str) -> Option<&'static str> {
    match object {
        "customers" => Some("/v1/customers"),
        "subscriptions" => Some("/v1/subscriptions"),
        "invoices" => Some("/v1/invoices"),
        _ => None,
    }
}

/// The event types whose `data.object` is a record of `object` (at most 20: Stripe's cap).
fn event_types(object: &str) -> &'static [&'static str] {
    match object {
        "customers" => &["customer.created", "customer.updated", "customer.deleted"],
        "subscriptions" => &[
            "customer.subscription.created",
            "customer.subscription.updated",
            "customer.subscription.deleted",
            "customer.subscription.paused",
            "customer.subscription.resumed",
            "customer.subscription.pending_update_applied",
            "customer.subscription.pending_update_expired",
            "customer.subscription.trial_will_end",
        ],
        "invoices" => &[
            "invoice.created",
            "invoice.updated",
            "invoice.deleted",
            "invoice.finalized",
            "invoice.finalization_failed",
            "invoice.marked_uncollectible",
            "invoice.overdue",
            "invoice.paid",
            "invoice.payment_action_required",
            "invoice.payment_failed",
            "invoice.payment_succeeded",
            "invoice.sent",
            "invoice.voided",
            "invoice.will_be_due",
        ],
        _ => &[],
    }
}

/// Customer fields Stripe accepts on create and update; anything else a projection
/// carries (derived or read-only fields) would make Stripe answer 400.
const CUSTOMER_WRITABLE: &[&str] = &[
    "name",
    "email",
    "phone",
    "description",
    "address",
    "shipping",
    "metadata",
    "preferred_locales",
    "tax_exempt",
    "invoice_settings",
];

/// Fields Stripe computes; never sent, whatever the object.
const READ_ONLY: &[&str] = &[
    "id",
    "object",
    "created",
    "livemode",
    "mrr",
    "items",
    "plan",
    "interval",
    "interval_count",
    "quantity",
    "started_at",
    "issued_at",
    "due_at",
    "paid_at",
    "deleted",
    mapping::REVSYNC_ID,
    "billing_contact_email",
    "billing_contact_name",
];

/// Source fields as the JSON body Stripe takes: `address.city` becomes
/// `address: {city}`, later form-encoded as `address[city]`.
fn body_from_fields(object: &str, fields: &BTreeMap<String, Value>) -> Value {
    Value::Object(body_map(object, fields))
}

/// [`body_from_fields`] as the map it is.
fn body_map(object: &str, fields: &BTreeMap<String, Value>) -> serde_json::Map<String, Value> {
    let mut body = serde_json::Map::new();
    'fields: for (name, value) in fields {
        let top = name.split('.').next().unwrap_or(name);
        let allowed = if object == "customers" {
            CUSTOMER_WRITABLE.contains(&top)
        } else {
            !READ_ONLY.contains(&top)
        };
        if !allowed {
            continue;
        }
        let mut parents: Vec<&str> = name.split('.').collect();
        let Some(leaf) = parents.pop() else {
            continue;
        };
        let mut slot = &mut body;
        for part in parents {
            let entry = slot.entry(part.to_owned()).or_insert_with(|| json!({}));
            if !entry.is_object() {
                *entry = json!({});
            }
            let Value::Object(inner) = entry else {
                continue 'fields;
            };
            slot = inner;
        }
        slot.insert(leaf.to_owned(), value.clone());
    }
    body
}

fn short_hash(form: &[(String, String)]) -> String {
    let mut h = Sha256::new();
    for (k, v) in form {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    hex::encode(digest.get(..8).unwrap_or_default())
}

impl StripeConnector {
    /// Caps every API answer's body (the connector file's `http.max_response_bytes`).
    pub fn with_max_response_bytes(mut self, max: usize) -> Self {
        self.client = self.client.with_max_response_bytes(max);
        self
    }

    /// Ends the client's waits when the daemon stops.
    pub fn with_shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.client = self.client.with_shutdown(shutdown);
        self
    }

    /// Give the object `id` the fields of `body`. The form's hash is in the key: one
    /// version never reuses a key with other parameters (Stripe would answer
    /// idempotency_error).
    async fn update(
        &self,
        path: &str,
        id: &str,
        body: &Value,
        version: u64,
    ) -> Result<String, ConnectorError> {
        let form = form_encode(body);
        let key = format!("revsync-{id}-v{version}-{}", short_hash(&form));
        self.client
            .post(&format!("{path}/{id}"), form, &key)
            .await
            .and_then(|v| created_id(&v))
    }

    /// The customer made for `canonical_id`: the one an earlier attempt made, else a new one.
    ///
    /// Nothing tells a first create from a retry: a dead letter replayed, or a create sent
    /// again after a restart, may come days after the first attempt, and Stripe prunes
    /// idempotency keys after 24 hours. So every create first searches for a customer
    /// carrying the canonical id. Search lags writes by up to a minute (an hour in an
    /// outage), which the idempotency key covers: within a day the create replays.
    ///
    /// A create whose answer was lost may also be retried after the record changed. The
    /// key must then stay the same, and so must its parameters (Stripe answers
    /// idempotency_error otherwise). So the customer is created carrying only its
    /// canonical id, under a key of that id alone, and is given its fields after.
    async fn create_customer(
        &self,
        path: &str,
        canonical_id: &uuid::Uuid,
    ) -> Result<String, ConnectorError> {
        if let Some(id) = self.customer_made_for(canonical_id).await? {
            tracing::info!(customer = %id, canonical_id = %canonical_id, "stripe customer already made for this record, linking it");
            return Ok(id);
        }
        let key = format!("revsync-{canonical_id}-create");
        let bare = json!({"metadata": {mapping::REVSYNC_ID: canonical_id.to_string()}});
        self.client
            .post(path, form_encode(&bare), &key)
            .await
            .and_then(|v| created_id(&v))
    }

    /// A subscription for a canonical record (a workflow's, issue 22): the customer the
    /// record names and its plan (a price id) as the one item, with the record's id in
    /// the metadata. One made before (a retry after the answer was lost, past the
    /// idempotency key's day) is found by Stripe's search and linked instead.
    async fn create_subscription(
        &self,
        path: &str,
        canonical_id: &uuid::Uuid,
        fields: &BTreeMap<String, Value>,
    ) -> Result<String, ConnectorError> {
        if let Some(id) = self.made_for("subscriptions", canonical_id).await? {
            tracing::info!(subscription = %id, canonical_id = %canonical_id, "stripe subscription already made for this record, linking it");
            return Ok(id);
        }
        let text = |k: &str| {
            fields
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        // The customer may be on its way to Stripe in the same round: try again later.
        let customer = text("customer").ok_or_else(|| {
            ConnectorError::Transient(
                "the subscription's customer has no Stripe customer yet".into(),
            )
        })?;
        let price = text("plan").ok_or_else(|| {
            permanent("a stripe subscription needs `plan` (a price id, e.g. price_...)".into())
        })?;
        let quantity = fields.get("quantity").and_then(Value::as_i64).unwrap_or(1);
        let body = json!({
            "customer": customer,
            "items": [{"price": price, "quantity": quantity}],
            "metadata": {mapping::REVSYNC_ID: canonical_id.to_string()},
        });
        let key = format!("revsync-{canonical_id}-create");
        self.client
            .post(path, form_encode(&body), &key)
            .await
            .and_then(|v| created_id(&v))
    }

    /// The oldest customer whose `metadata[revsync_id]` is `canonical_id`, by Stripe's search.
    async fn customer_made_for(
        &self,
        canonical_id: &uuid::Uuid,
    ) -> Result<Option<String>, ConnectorError> {
        self.made_for("customers", canonical_id).await
    }

    /// The oldest `object` (customers, subscriptions) whose `metadata[revsync_id]` is
    /// `canonical_id`, by Stripe's search.
    async fn made_for(
        &self,
        object: &str,
        canonical_id: &uuid::Uuid,
    ) -> Result<Option<String>, ConnectorError> {
        // A uuid holds no quote, so the value needs no escaping.
        let query = format!("metadata['{}']:'{canonical_id}'", mapping::REVSYNC_ID);
        let page = self
            .client
            .list(
                &format!("/v1/{object}/search"),
                &[
                    ("query".to_owned(), query),
                    ("limit".to_owned(), PAGE.to_owned()),
                ],
            )
            .await?;
        // Two would be a duplicate made before this guard: keep linking the first one made.
        Ok(page
            .data
            .iter()
            .filter_map(|c| Some((c.get("created")?.as_i64()?, c.get("id")?.as_str()?)))
            .min()
            .map(|(_, id)| id.to_owned()))
    }

    /// `overall` is the account budget; the per-endpoint budget comes from the params.
    pub fn new(params: StripeParams, overall: Limits) -> Result<Self, ConnectorError> {
        let per_endpoint = Limits::new(
            params
                .endpoint_requests_per_second
                .min(overall.requests.max(1)),
            Duration::from_secs(1),
        );
        let client = StripeClient::new(
            &params.base_url,
            params.secret_key.clone(),
            overall,
            per_endpoint,
            Duration::from_millis(params.timeout_ms),
        )?;
        Ok(Self {
            client,
            params,
            clock: Arc::new(Utc::now),
            status: Mutex::new(StripeStatus::default()),
        })
    }

    /// Replace the wall clock (tests move it forward by weeks).
    pub fn with_clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    pub fn status(&self) -> StripeStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    fn writable(&self, object: &str) -> bool {
        object == "customers" || self.params.allow_billing_writes
    }

    fn to_changes(
        &self,
        object: &str,
        objects: &[Value],
        at: DateTime<Utc>,
        fetched: &mut Fetched,
        mut past: HashMap<String, Vec<Change>>,
    ) {
        for obj in objects {
            // Older states first: the engine applies a page's changes in order, each
            // newer than the last, so every one is kept in the record's history.
            if let Some(before) = obj
                .get("id")
                .and_then(Value::as_str)
                .and_then(|id| past.remove(id))
            {
                fetched.changes.extend(before);
            }
            match mapping::to_change(obj, at, self.params.customers_as) {
                Ok(c) => fetched.changes.push(c),
                Err(e) => fetched.reject(object, obj, e),
            }
        }
    }

    /// The newest event of `object`'s types and every id of its second, on Stripe's clock:
    /// where following events takes over from a backfill starting now.
    async fn events_mark(
        &self,
        object: &str,
    ) -> Result<Option<(i64, Vec<String>)>, ConnectorError> {
        let mut query = vec![("limit".to_owned(), PAGE.to_owned())];
        for t in event_types(object) {
            query.push(("types[]".into(), (*t).to_owned()));
        }
        let newest = self.client.list("/v1/events", &query).await?;
        let created_of = |e: &Value| e.get("created").and_then(Value::as_i64);
        let Some(created) = newest.data.first().and_then(created_of) else {
            return Ok(None);
        };
        // The newest page holds the newest second whole unless that second fills it.
        let whole = !newest.has_more || newest.data.last().and_then(created_of) != Some(created);
        let second = if whole {
            newest.data
        } else {
            self.scan_events(object, created, Some(created), false)
                .await?
                .unwrap_or_default()
        };
        // Oldest first, as `seen` keeps them (listed newest first).
        let seen = second
            .iter()
            .rev()
            .filter(|e| created_of(e) == Some(created))
            .filter_map(|e| e.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect();
        Ok(Some((created, seen)))
    }

    async fn backfill(
        &self,
        object: &str,
        path: &str,
        started: i64,
        after: Option<String>,
        mark: Option<(i64, Vec<String>)>,
    ) -> Result<Fetched, ConnectorError> {
        // A backfill starting now takes its mark first: anything created after it is read
        // by following events, whatever the list pages show.
        let mark = match (&after, mark) {
            (None, None) => self.events_mark(object).await?,
            (_, m) => m,
        };
        let mut query = vec![("limit".to_owned(), PAGE.to_owned())];
        if object == "subscriptions" {
            // The default hides canceled subscriptions; discounts expanded to price MRR.
            query.push(("status".into(), "all".into()));
            query.push(("expand[]".into(), "data.discounts".into()));
        }
        if let Some(a) = &after {
            query.push(("starting_after".into(), a.clone()));
        }
        let page = self.client.list(path, &query).await?;
        let past = if object == "subscriptions" {
            self.subscriptions_past(&page.data).await?
        } else {
            HashMap::new()
        };
        self.backfill_page(object, started, mark, &page, past)
    }

    /// Each subscription's past states, by id, from its timestamps and its invoices
    /// (`history.rs`). A refusal to list invoices (a restricted key) leaves the status
    /// timeline alone; anything retryable fails the page, which is read again.
    async fn subscriptions_past(
        &self,
        subs: &[Value],
    ) -> Result<HashMap<String, Vec<Change>>, ConnectorError> {
        let now = self.now().timestamp();
        let mut prices: HashMap<String, Value> = subs
            .iter()
            .filter_map(|s| s.pointer("/items/data").and_then(Value::as_array))
            .flatten()
            .filter_map(|i| {
                let p = i.get("price")?;
                Some((p.get("id")?.as_str()?.to_owned(), p.clone()))
            })
            .collect();
        let mut out = HashMap::new();
        for sub in subs {
            let Some(id) = sub.get("id").and_then(Value::as_str) else {
                continue;
            };
            let invoices = match self.invoices_of(id).await {
                Ok(v) => v,
                Err(ConnectorError::Permanent { detail, .. }) => {
                    tracing::warn!(subscription = id, error = %detail, "stripe invoices not readable, no mrr history");
                    Vec::new()
                }
                Err(ConnectorError::NotFound) => Vec::new(),
                Err(e) => return Err(e),
            };
            for price in history::unknown_prices(id, &invoices, &prices) {
                match self.client.get(&format!("/v1/prices/{price}"), &[]).await {
                    Ok(p) => {
                        prices.insert(price, p);
                    }
                    // The invoice stays unpriced and says nothing.
                    Err(ConnectorError::NotFound | ConnectorError::Permanent { .. }) => {
                        tracing::warn!(subscription = id, price = %price, "stripe price not readable")
                    }
                    Err(e) => return Err(e),
                }
            }
            let billed = history::billed(id, &invoices, &prices);
            out.insert(id.to_owned(), history::past_changes(sub, &billed, now));
        }
        Ok(out)
    }

    /// Every invoice of the subscription `id`, newest first, 100 a request.
    async fn invoices_of(&self, id: &str) -> Result<Vec<Value>, ConnectorError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query = vec![
                ("subscription".to_owned(), id.to_owned()),
                ("limit".to_owned(), PAGE.to_owned()),
            ];
            if let Some(a) = &after {
                query.push(("starting_after".into(), a.clone()));
            }
            let page = self.client.list("/v1/invoices", &query).await?;
            after = page
                .data
                .last()
                .and_then(|i| i.get("id"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            all.extend(page.data);
            if !page.has_more || after.is_none() {
                return Ok(all);
            }
        }
    }

    /// A backfill list page's changes, and the cursor after it: the next page, or the
    /// events from the backfill's start once the list is done.
    fn backfill_page(
        &self,
        object: &str,
        started: i64,
        mark: Option<(i64, Vec<String>)>,
        page: &List,
        past: HashMap<String, Vec<Change>>,
    ) -> Result<Fetched, ConnectorError> {
        let mut fetched = Fetched::default();
        // Lists carry no update time: the state is as of this read.
        self.to_changes(object, &page.data, self.now(), &mut fetched, past);
        let last = page
            .data
            .last()
            .and_then(|o| o.get("id"))
            .and_then(Value::as_str);
        let next = match (page.has_more, last) {
            (true, Some(last)) => Cursor::Backfill {
                started,
                after: Some(last.to_owned()),
                mark,
            },
            _ => {
                tracing::info!(object, "stripe backfill complete, following events");
                // Our clock may be behind Stripe's: without a mark the events window
                // reaches back past any skew. An older mark means no event of the object
                // came within that window, so starting at it would only re-read nothing.
                let overlap = started.saturating_sub(BACKFILL_OVERLAP_SECS);
                match mark.filter(|(created, _)| *created >= overlap) {
                    Some((created, seen)) => Cursor::Events { created, seen },
                    None => Cursor::Events {
                        created: overlap,
                        seen: Vec::new(),
                    },
                }
            }
        };
        fetched.more = matches!(next, Cursor::Backfill { .. });
        fetched.cursor = Some(revsync_sdk::cursor_text(&next)?);
        Ok(fetched)
    }

    /// Every event of `object` created at or after `from` (and at or before `upper`),
    /// newest-first as Stripe lists them; `None` when the window holds more than one
    /// scan may read.
    async fn scan_events(
        &self,
        object: &str,
        from: i64,
        upper: Option<i64>,
        capped: bool,
    ) -> Result<Option<Vec<Value>>, ConnectorError> {
        let mut base = vec![
            ("limit".to_owned(), PAGE.to_owned()),
            ("created[gte]".to_owned(), from.to_string()),
        ];
        if let Some(u) = upper {
            base.push(("created[lte]".into(), u.to_string()));
        }
        for t in event_types(object) {
            base.push(("types[]".into(), (*t).to_owned()));
        }
        let mut events = Vec::new();
        let mut after: Option<String> = None;
        let max_pages = if capped { MAX_SCAN_PAGES } else { 10_000 };
        for _ in 0..max_pages {
            let mut query = base.clone();
            if let Some(a) = &after {
                query.push(("starting_after".into(), a.clone()));
            }
            let page = self.client.list("/v1/events", &query).await?;
            after = page
                .data
                .last()
                .and_then(|e| e.get("id"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            events.extend(page.data);
            if !page.has_more || after.is_none() {
                return Ok(Some(events));
            }
        }
        if capped {
            Ok(None)
        } else {
            Err(ConnectorError::Transient(format!(
                "more than {max_pages} pages of {object} events in one second"
            )))
        }
    }

    /// Whether Stripe lists any event of `object` before (newer than) `newest`, the newest
    /// event read so far: one request of one event. `None` when Stripe does not know the
    /// event (purged after the retention, or a hand-made cursor), so it cannot tell.
    async fn anything_newer(
        &self,
        object: &str,
        newest: &str,
    ) -> Result<Option<bool>, ConnectorError> {
        let mut query = vec![
            ("limit".to_owned(), "1".to_owned()),
            ("ending_before".to_owned(), newest.to_owned()),
        ];
        for t in event_types(object) {
            query.push(("types[]".into(), (*t).to_owned()));
        }
        match self.client.list("/v1/events", &query).await {
            Ok(page) => Ok(Some(!page.data.is_empty())),
            // Stripe answers an unknown cursor object with 400 (or 404) `resource_missing`.
            // Any refusal of this check only costs the full read it would have saved.
            Err(ConnectorError::NotFound) => Ok(None),
            Err(ConnectorError::Permanent { detail, .. }) => {
                tracing::info!(
                    object,
                    event = newest,
                    error = %detail,
                    "stripe refused the new-events check, reading the events window"
                );
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn follow_events(
        &self,
        object: &str,
        created: i64,
        seen: Vec<String>,
    ) -> Result<Fetched, ConnectorError> {
        // Idle is the common case, and the boundary second can hold thousands of events
        // (a bulk import): rather than page through them on every poll, first ask whether
        // anything is listed before the newest of them. Stripe lists events by creation,
        // newest first, so whatever was created after the read that filled `seen` is
        // listed before that read's newest event: a later second sorts first, and so does
        // an event created later in the cursor's own second (one second's events are
        // listed newest first too). Nothing listed there means nothing new. `seen` is
        // pushed oldest first (`events_page` applies a window oldest first and appends
        // each second's new ids), so its last id is the newest. Anything new, or an
        // answer that cannot tell, reads the whole window as before, with its
        // same-second safety. What this cannot see is an event Stripe lists among those
        // already read although it was not there when they were read (an older event
        // made visible late); the full read would lose it too, as soon as its cursor
        // moved past that second.
        if let Some(newest) = seen.last() {
            if self.anything_newer(object, newest).await? == Some(false) {
                let cursor = revsync_sdk::cursor_text(&Cursor::Events { created, seen })?;
                return Ok(Fetched {
                    cursor: Some(cursor),
                    ..Fetched::default()
                });
            }
        }
        // Newest-first pages cannot be applied as they come without the cursor passing
        // older, unread events; so read a whole window, narrowing it while it is too big.
        let mut upper: Option<i64> = None;
        let mut events = None;
        for _ in 0..64 {
            let capped = upper.is_none_or(|u| u > created);
            if let Some(found) = self.scan_events(object, created, upper, capped).await? {
                events = Some(found);
                break;
            }
            let top = upper.unwrap_or_else(|| self.now().timestamp());
            upper = Some(window_mid(created, top));
        }
        let events = events.ok_or_else(|| {
            ConnectorError::Transient(format!("{object} events window did not narrow"))
        })?;
        self.events_page(object, events, created, &seen, upper)
    }

    /// The changes of a window of events (newest first, as listed) read from `created`,
    /// `seen` the ids of that second already applied, `upper` the window's end if it was
    /// narrowed; and the cursor after them.
    fn events_page(
        &self,
        object: &str,
        mut events: Vec<Value>,
        created: i64,
        seen: &[String],
        upper: Option<i64>,
    ) -> Result<Fetched, ConnectorError> {
        events.reverse();
        let mut fetched = Fetched::default();
        let mut last_created = created;
        let mut boundary = seen.to_vec();
        for event in &events {
            let id = event.get("id").and_then(Value::as_str).unwrap_or_default();
            let at = event
                .get("created")
                .and_then(Value::as_i64)
                .unwrap_or(created);
            if at == created && seen.iter().any(|s| s == id) {
                continue;
            }
            if at > last_created {
                last_created = at;
                boundary.clear();
            }
            // Oldest first: the last id of `seen` is the newest (see `follow_events`).
            boundary.push(id.to_owned());
            match webhook::event_change(event, self.params.customers_as) {
                Ok(Some(change)) if change.object == object => fetched.changes.push(change),
                Ok(_) => {}
                // The event's object is the record: replay reads it again by its id.
                Err(e) => fetched.reject(object, event.pointer("/data/object").unwrap_or(event), e),
            }
        }
        // A narrowed window was read completely up to `upper`: move there even if it held
        // nothing new, or the same oversized window would be scanned forever.
        if let Some(u) = upper {
            if u > last_created {
                last_created = u;
                boundary.clear();
            }
        }
        let next = Cursor::Events {
            created: last_created,
            seen: boundary,
        };
        fetched.more = upper.is_some();
        fetched.cursor = Some(revsync_sdk::cursor_text(&next)?);
        Ok(fetched)
    }
}

#[async_trait]
impl Connector for StripeConnector {
    fn record_url(&self, object: &str, external_id: &str) -> Option<String> {
        stripe_dashboard_url(&self.params, object, external_id)
    }

    fn capabilities(&self) -> Capabilities {
        let customer_kind = match self.params.customers_as {
            CustomersAs::Organization => Kind::Organization,
            CustomersAs::Person => Kind::Person,
        };
        let billing = self.params.allow_billing_writes;
        Capabilities {
            objects: vec![
                ObjectCapability {
                    name: "customers".into(),
                    kind: customer_kind,
                    read: true,
                    write: true,
                },
                ObjectCapability {
                    name: "subscriptions".into(),
                    kind: Kind::Subscription,
                    read: true,
                    write: billing,
                },
                ObjectCapability {
                    name: "invoices".into(),
                    kind: Kind::Invoice,
                    read: true,
                    write: billing,
                },
            ],
            // No batch endpoints: items go one request each.
            batch_size: 10,
            webhooks: self.params.webhook_secret.is_some(),
        }
    }

    async fn fetch(&self, object: &str, cursor: Option<&str>) -> Result<Fetched, ConnectorError> {
        let path = list_path(object)
            .ok_or_else(|| permanent(format!("unknown stripe object `{object}`")))?;
        let now = self.now().timestamp();
        let parsed = match cursor.map(serde_json::from_str::<Cursor>) {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                // Re-reading is always safe (apply is idempotent); stalling is not.
                tracing::warn!(object, error = %e, "unreadable stripe cursor, re-reading in full");
                None
            }
        };
        match parsed {
            None => self.backfill(object, path, now, None, None).await,
            Some(Cursor::Backfill {
                started,
                after,
                mark,
            }) => self.backfill(object, path, started, after, mark).await,
            Some(Cursor::Events { created, .. })
                if created < now.saturating_sub(EVENTS_RETENTION_SECS - RETENTION_MARGIN_SECS) =>
            {
                let cursor_created = DateTime::from_timestamp(created, 0).unwrap_or_default();
                tracing::warn!(
                    object,
                    cursor_created = %cursor_created,
                    retention_days = EVENTS_RETENTION_SECS / 86_400,
                    "stripe events cursor is older than the event retention, re-reading in full"
                );
                {
                    let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
                    s.full_rereads = s.full_rereads.saturating_add(1);
                    s.last_full_reread = Some(FullReread {
                        object: object.to_owned(),
                        at: self.now(),
                        cursor_created,
                    });
                }
                self.backfill(object, path, now, None, None).await
            }
            Some(Cursor::Events { created, seen }) => {
                self.follow_events(object, created, seen).await
            }
        }
    }

    async fn fetch_by_ids(
        &self,
        object: &str,
        ids: &[String],
    ) -> Result<Vec<Change>, ConnectorError> {
        let path = list_path(object)
            .ok_or_else(|| permanent(format!("unknown stripe object `{object}`")))?;
        let mut out = Vec::new();
        for id in ids {
            let query = if object == "subscriptions" {
                vec![("expand[]".to_owned(), "discounts".to_owned())]
            } else {
                Vec::new()
            };
            match self.client.get(&format!("{path}/{id}"), &query).await {
                Ok(obj) => match mapping::to_change(&obj, self.now(), self.params.customers_as) {
                    Ok(c) => out.push(c),
                    Err(e) => tracing::warn!(object, error = %e, "unreadable stripe record"),
                },
                // Absent is not deleted: only Stripe's own `deleted: true` says that.
                Err(ConnectorError::NotFound) => {
                    tracing::info!(object, id = %id, "stripe record not found")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn push(
        &self,
        object: &str,
        items: &[PushItem],
    ) -> Result<Vec<PushResult>, ConnectorError> {
        let path = list_path(object)
            .ok_or_else(|| permanent(format!("unknown stripe object `{object}`")))?;
        if !self.writable(object) {
            return Err(permanent(format!(
                "stripe {object} are read-only (set params.allow_billing_writes to write them)"
            )));
        }
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            let result = match &item.op {
                PushOp::Create { canonical_id } => {
                    let mut map = body_map(object, &item.fields);
                    let meta = map.entry("metadata").or_insert_with(|| json!({}));
                    if !meta.is_object() {
                        *meta = json!({});
                    }
                    meta[mapping::REVSYNC_ID] = json!(canonical_id.to_string());
                    let body = Value::Object(map);
                    if object == "customers" {
                        match self.create_customer(path, canonical_id).await {
                            Ok(id) => self.update(path, &id, &body, item.version).await,
                            Err(e) => Err(e),
                        }
                    } else if object == "subscriptions" {
                        self.create_subscription(path, canonical_id, &item.fields)
                            .await
                    } else {
                        // An invoice needs its lines: revsync maps none (they are
                        // read-only here), so Stripe would refuse the create. Said
                        // plainly, without a request.
                        Err(permanent(format!(
                            "revsync does not create stripe {object}: they need lines it \
                             does not map; create them in Stripe, and revsync reads and \
                             updates them"
                        )))
                    }
                }
                PushOp::Update { external_id } => {
                    let body = body_from_fields(object, &item.fields);
                    self.update(path, external_id, &body, item.version).await
                }
                PushOp::Delete { external_id } => {
                    match self.client.delete(&format!("{path}/{external_id}")).await {
                        Ok(_) | Err(ConnectorError::NotFound) => Ok(external_id.clone()),
                        Err(e) => Err(e),
                    }
                }
            };
            // Bad credentials fail every item alike: say so once for the batch if
            // nothing was written yet.
            if let Err(ConnectorError::Auth(msg)) = &result {
                if results.is_empty() {
                    return Err(ConnectorError::Auth(msg.clone()));
                }
            }
            results.push(result);
        }
        Ok(results)
    }

    fn verify_webhook(&self, req: &WebhookRequest<'_>) -> Result<Vec<WebhookEvent>, WebhookError> {
        let secret = self
            .params
            .webhook_secret
            .as_ref()
            .ok_or_else(|| WebhookError::BadSignature("no webhook_secret configured".into()))?;
        webhook::verify(
            req.header("stripe-signature"),
            req.body,
            secret.expose(),
            req.received_at,
            i64::from(self.params.webhook_tolerance_secs),
        )?;
        webhook::parse(req.body, self.params.customers_as)
    }

    /// The documented shape plus the metadata keys of the newest records (`describe.rs`).
    async fn describe(&self, object: &str) -> Result<revsync_sdk::ObjectSchema, ConnectorError> {
        self.describe_object(object).await
    }

    fn rate_limit(&self) -> Option<LimiterStats> {
        Some(self.client.stats())
    }

    fn notices(&self) -> Vec<String> {
        let st = self.status();
        st.last_full_reread
            .map(|r| {
                vec![format!(
                    "events cursor ({}) was older than Stripe's 30-day event retention: full re-read of {} started at {} ({} so far)",
                    r.cursor_created.to_rfc3339(),
                    r.object,
                    r.at.to_rfc3339(),
                    st.full_rereads
                )]
            })
            .unwrap_or_default()
    }

    fn min_poll_interval(&self) -> Duration {
        Duration::from_secs(2)
    }
}

/// The second halfway between the cursor and the window's top. Both come from event times
/// and stored cursors, so the plain `created + (top - created) / 2` could overflow.
fn window_mid(created: i64, top: i64) -> i64 {
    // The mean of two i64 always fits an i64; widening makes the sum unable to overflow.
    let mid = (i128::from(created) + i128::from(top)) / 2;
    i64::try_from(mid).unwrap_or(created)
}

fn created_id(v: &Value) -> Result<String, ConnectorError> {
    v.get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ConnectorError::Permanent {
            detail: "stripe answered without an id".into(),
            status: Some(200),
            body: Some(v.to_string()),
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_copy_links_to_the_dashboard_of_its_mode() {
        let mut p: super::StripeParams =
            serde_json::from_value(serde_json::json!({ "secret_key": "sk_test_abc" })).unwrap();
        assert_eq!(
            super::stripe_dashboard_url(&p, "subscriptions", "sub_1").as_deref(),
            Some("https://dashboard.stripe.com/test/subscriptions/sub_1")
        );
        p.secret_key = revsync_sdk::Secret::new("sk_live_abc");
        assert_eq!(
            super::stripe_dashboard_url(&p, "customers", "cus_1").as_deref(),
            Some("https://dashboard.stripe.com/customers/cus_1")
        );
        p.base_url = "http://127.0.0.1:12111".into();
        assert_eq!(super::stripe_dashboard_url(&p, "customers", "cus_1"), None);
    }

    use super::*;

    #[test]
    fn the_events_window_halves_without_overflow() {
        assert_eq!(window_mid(100, 200), 150);
        // A crafted cursor far from the clock: the old `created + (top - created) / 2`
        // overflowed here in a debug build.
        assert!((-1..=0).contains(&window_mid(i64::MIN, i64::MAX)));
        assert_eq!(window_mid(i64::MAX, 0), i64::MAX / 2);
        let mid = window_mid(-5, 1_700_000_000);
        assert!((-5..1_700_000_000).contains(&mid));
    }

    #[test]
    fn dotted_fields_nest_and_read_only_ones_are_dropped() {
        let fields: BTreeMap<String, Value> = [
            ("name".to_owned(), json!("Acme")),
            ("address.city".to_owned(), json!("Berlin")),
            ("mrr".to_owned(), json!(5)),
            ("revsync_id".to_owned(), json!("x")),
        ]
        .into();
        assert_eq!(
            body_from_fields("customers", &fields),
            json!({"name": "Acme", "address": {"city": "Berlin"}})
        );
    }

    #[test]
    fn cursors_round_trip() {
        let c = Cursor::Events {
            created: 5,
            seen: vec!["evt_1".into()],
        };
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(s, r#"{"phase":"events","created":5,"seen":["evt_1"]}"#);
        assert_eq!(serde_json::from_str::<Cursor>(&s).unwrap(), c);
    }
}
