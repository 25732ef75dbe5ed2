//! Zendesk Support connector (users, organizations, tickets).
//!
//! Reads go through the incremental exports (cursor-based for users and tickets,
//! time-based for organizations), writes through the bulk endpoints and their jobs.

pub mod client;
pub mod config;
pub mod describe;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod mapping;
#[cfg(feature = "sim")]
pub mod sim;
pub mod webhook;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use revsync_sdk::http::{LimiterStats, Limits};
use revsync_sdk::Shutdown;
use revsync_sdk::{
    answer, BuildContext, Capabilities, Change, Connector, ConnectorError, ConnectorType, Fetched,
    Kind, ObjectCapability, ParamError, PushItem, PushOp, PushResult, WebhookError, WebhookEvent,
    WebhookRequest,
};
use serde_json::{json, Map, Value};

use client::{describe_error, malformed, JobOutcome, ZendeskClient};
use config::ZendeskParams;

/// Export pages hold at most this many records.
const EXPORT_PAGE: usize = 1000;
/// show_many and the bulk endpoints take at most 100 records.
const BATCH: usize = 100;

/// The `zendesk` connector type.
pub struct Zendesk;

impl ConnectorType for Zendesk {
    fn name(&self) -> &'static str {
        "zendesk"
    }

    fn objects(&self) -> &'static [(&'static str, Kind)] {
        &[
            ("users", Kind::Person),
            ("organizations", Kind::Organization),
            ("tickets", Kind::Ticket),
        ]
    }

    fn validate_params(&self, params: &serde_json::Value) -> Result<(), Vec<ParamError>> {
        config::ZendeskParams::from_value(params).map(|_| ())
    }

    /// Users and organizations are refused without a name (RecordInvalid).
    fn required_for_create(&self, object: &str) -> &'static [&'static str] {
        match object {
            "users" | "organizations" => &["name"],
            _ => &[],
        }
    }

    fn params_example(&self) -> &'static str {
        "params:\n  subdomain: acme\n  auth:\n    method: api_token\n    email: ops@acme.com\n    token: ${ZENDESK_TOKEN}"
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Option<Result<Arc<dyn Connector>, ConnectorError>> {
        let built = (|| {
            let params = ZendeskParams::from_value(ctx.params).map_err(|errs| {
                permanent(format!(
                    "invalid params of `{}`: {}",
                    ctx.id,
                    errs.iter()
                        .map(|e| format!("{}: {}", e.path, e.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
            })?;
            let limits = ctx
                .rate_limit
                .resolve(Limits::new(
                    params.requests_per_minute,
                    Duration::from_secs(60),
                ))
                .map_err(permanent)?;
            let max_body = ctx.http.max_response_bytes().map_err(permanent)?;
            let c: Arc<dyn Connector> = Arc::new(
                ZendeskConnector::new(params, limits)?
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

/// A running Zendesk connector.
pub struct ZendeskConnector {
    client: ZendeskClient,
    params: ZendeskParams,
    verifier: Option<webhook::Verifier>,
    /// Per object, the account's clock at this process's first export answer.
    first_answer: std::sync::Mutex<BTreeMap<String, i64>>,
}

/// What Zendesk's incremental exports hold back: the most recent minute is never served.
const EXPORT_HOLDBACK_SECS: i64 = 60;

impl ZendeskConnector {
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

    pub fn new(params: ZendeskParams, limits: Limits) -> Result<Self, ConnectorError> {
        let client = ZendeskClient::new(&params, limits)?;
        let verifier = params
            .webhook_secret
            .clone()
            .map(|secret| webhook::Verifier {
                secret,
                order: params.webhook_signature_order,
                tolerance: Duration::from_secs(params.webhook_tolerance_secs),
            });
        Ok(Self {
            client,
            params,
            verifier,
            first_answer: std::sync::Mutex::new(BTreeMap::new()),
        })
    }

    /// Whether an export answered at `at` (the account's clock) still holds back changes
    /// made before this process's first answer for `object`: records that existed when
    /// revsync began reading, not served yet. Caught up once an answer comes a minute
    /// after the first.
    fn behind(&self, object: &str, at: i64) -> bool {
        let mut first = self.first_answer.lock().unwrap_or_else(|e| e.into_inner());
        let first = *first.entry(object.to_owned()).or_insert(at);
        at.saturating_sub(EXPORT_HOLDBACK_SECS) < first
    }

    /// Users and tickets: `start_time` first, then the export's own cursor (`c:<cursor>`).
    async fn fetch_cursor_export(
        &self,
        object: &str,
        cursor: Option<&str>,
    ) -> Result<Fetched, ConnectorError> {
        let mut req = self
            .client
            .request(Method::GET, &format!("incremental/{object}/cursor"))
            .with_query("per_page", EXPORT_PAGE.to_string());
        req = match cursor.and_then(|c| c.strip_prefix("c:")) {
            Some(c) => req.with_query("cursor", c),
            // A backfill reads the same export from the beginning of time.
            None => req.with_query("start_time", start_time(cursor)?.to_string()),
        };
        if object == "tickets" {
            // solved_at lives in the ticket's metric set, not on the ticket.
            req = req.with_query("include", "metric_sets");
        }
        let (page, at) = self.client.export(req).await?;
        let mut out = export_page(object, &page, cursor)?;
        out.behind = !out.more && self.behind(object, at);
        Ok(out)
    }

    /// Organizations: the time-based export. The next `start_time` is the page's
    /// `end_time`, so records of that second come again; the cursor remembers which ids
    /// of that second were already handed out (`t:<end_time>:<id,id,...>`). The export
    /// never serves the last minute, so no record can still join a second we have passed.
    async fn fetch_organizations(&self, cursor: Option<&str>) -> Result<Fetched, ConnectorError> {
        let (start, seen) = time_cursor(cursor)?;
        let req = self
            .client
            .request(Method::GET, "incremental/organizations")
            .with_query("start_time", start.to_string())
            .with_query("per_page", EXPORT_PAGE.to_string());
        let (page, at) = self.client.export(req).await?;
        let mut out = organizations_page(&page, start, &seen)?;
        out.behind = !out.more && self.behind("organizations", at);
        Ok(out)
    }

    async fn show_many(&self, object: &str, ids: &[String]) -> Result<Vec<Value>, ConnectorError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(BATCH) {
            let req = self
                .client
                .request(Method::GET, &format!("{object}/show_many"))
                .with_query("ids", chunk.join(","));
            let v = self.client.json(req).await?;
            out.extend(
                v.get(object)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        Ok(out)
    }

    async fn push_users(&self, items: &[PushItem]) -> Result<Vec<PushResult>, ConnectorError> {
        let mut results: Vec<Option<PushResult>> = vec![None; items.len()];
        let mut creates = Vec::new();
        let mut updates = Vec::new();
        let mut deletes = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match &item.op {
                PushOp::Create { canonical_id } => {
                    let mut body = mapping::payload(&item.fields);
                    // The canonical id is the match key: a retried create updates the
                    // user it made the first time (then email matches, as Zendesk does).
                    body.insert("external_id".into(), json!(canonical_id.to_string()));
                    body.entry("role").or_insert(json!("end-user"));
                    creates.push((i, Value::Object(body)));
                }
                PushOp::Update { external_id } => {
                    updates.push((i, external_id.clone(), mapping::payload(&item.fields)))
                }
                PushOp::Delete { external_id } => deletes.push((i, external_id.clone())),
            }
        }
        for chunk in creates.chunks(BATCH) {
            let users: Vec<Value> = chunk.iter().map(|(_, b)| b.clone()).collect();
            let req = self
                .client
                .request(Method::POST, "users/create_or_update_many")
                .with_json(json!({ "users": users }))
                // An upsert on external_id: sending it twice changes nothing.
                .with_retry(true);
            let job = self.client.run_job(req).await?;
            for ((i, _), r) in chunk.iter().zip(by_index(&job, chunk.len())) {
                answer(&mut results, *i, item_result(r));
            }
        }
        self.run_updates("users", &updates, &mut results).await?;
        self.run_deletes("users", &deletes, &mut results).await?;
        Ok(finish(results))
    }

    async fn push_organizations(
        &self,
        items: &[PushItem],
    ) -> Result<Vec<PushResult>, ConnectorError> {
        let mut results: Vec<Option<PushResult>> = vec![None; items.len()];
        let mut creates = Vec::new();
        let mut updates = Vec::new();
        let mut deletes = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match &item.op {
                PushOp::Create { canonical_id } => {
                    let mut body = mapping::payload(&item.fields);
                    body.insert("external_id".into(), json!(canonical_id.to_string()));
                    creates.push((i, canonical_id.to_string(), body));
                }
                PushOp::Update { external_id } => {
                    updates.push((i, external_id.clone(), mapping::payload(&item.fields)))
                }
                PushOp::Delete { external_id } => deletes.push((i, external_id.clone())),
            }
        }
        // create_many is not an upsert: a create whose answer was lost already exists
        // under our external id, and becomes an update of that organization.
        let keys: Vec<String> = creates.iter().map(|(_, k, _)| k.clone()).collect();
        let existing = self.organizations_by_external_id(&keys).await?;
        let mut fresh = Vec::new();
        for (i, key, body) in creates {
            match existing.get(&key) {
                Some(id) => updates.push((i, id.clone(), body)),
                None => fresh.push((i, key, body)),
            }
        }
        let mut lost_race = Vec::new();
        let mut name_taken = Vec::new();
        for chunk in fresh.chunks(BATCH) {
            let orgs: Vec<Value> = chunk
                .iter()
                .map(|(_, _, b)| Value::Object(b.clone()))
                .collect();
            let req = self
                .client
                .request(Method::POST, "organizations/create_many")
                .with_json(json!({ "organizations": orgs }));
            let job = self.client.run_job(req).await?;
            for ((i, key, body), r) in chunk.iter().zip(by_index(&job, chunk.len())) {
                let duplicate = r
                    .as_ref()
                    .and_then(|r| r.get("error"))
                    .and_then(Value::as_str)
                    == Some("DuplicateValue");
                match item_result(r) {
                    Err(ConnectorError::Permanent { detail, .. })
                        if detail.contains("external_id") =>
                    {
                        lost_race.push((*i, key.clone(), body.clone()));
                        answer(&mut results, *i, Err(permanent(detail)));
                    }
                    Err(e) if duplicate => {
                        name_taken.push((*i, key.clone(), body.clone()));
                        answer(&mut results, *i, Err(e));
                    }
                    other => answer(&mut results, *i, other),
                }
            }
        }
        // Names are unique in Zendesk: an organization of that name the export has not
        // served yet (it holds the last minute back), or one nobody linked, is this
        // company's copy. One that carries another record's external id is not: the
        // refusal stands.
        for (i, key, body) in name_taken {
            let Some(name) = body.get("name").and_then(Value::as_str) else {
                continue;
            };
            if let Some(id) = self.unclaimed_organization(name, &key).await? {
                updates.push((i, id, body));
            }
        }
        if !lost_race.is_empty() {
            // Another writer (or our own earlier attempt) made it meanwhile.
            let keys: Vec<String> = lost_race.iter().map(|(_, k, _)| k.clone()).collect();
            let found = self.organizations_by_external_id(&keys).await?;
            for (i, key, body) in lost_race {
                if let Some(id) = found.get(&key) {
                    updates.push((i, id.clone(), body));
                }
            }
        }
        self.run_updates("organizations", &updates, &mut results)
            .await?;
        self.run_deletes("organizations", &deletes, &mut results)
            .await?;
        Ok(finish(results))
    }

    /// The id of the organization named `name` (Search Organizations by name, an exact
    /// match) if it carries no external id or `key`.
    async fn unclaimed_organization(
        &self,
        name: &str,
        key: &str,
    ) -> Result<Option<String>, ConnectorError> {
        let req = self
            .client
            .request(Method::GET, "organizations/search")
            .with_query("name", name.to_owned());
        let v = self.client.json(req).await?;
        let found = v
            .get("organizations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|o| {
                let ext = o.get("external_id").and_then(Value::as_str).unwrap_or("");
                ext.is_empty() || ext == key
            });
        Ok(found.and_then(|o| o.get("id")).and_then(mapping::id_text))
    }

    /// The ticket revsync made for canonical record `key`, if one exists: List Tickets
    /// filtered by `external_id` (not the search index, so a ticket made a second ago is
    /// found). External ids need not be unique; the oldest wins.
    async fn ticket_by_external_id(&self, key: &str) -> Result<Option<String>, ConnectorError> {
        let req = self
            .client
            .request(Method::GET, "tickets")
            .with_query("external_id", key.to_owned());
        let v = self.client.json(req).await?;
        Ok(v.get("tickets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|t| t.get("external_id").and_then(Value::as_str) == Some(key))
            .filter_map(|t| t.get("id").and_then(Value::as_u64))
            .min()
            .map(|id| id.to_string()))
    }

    /// external_id -> id. `show_many?external_ids=` (API_FACTS lists only `ids=` [U]).
    async fn organizations_by_external_id(
        &self,
        keys: &[String],
    ) -> Result<BTreeMap<String, String>, ConnectorError> {
        let mut out = BTreeMap::new();
        for chunk in keys.chunks(BATCH) {
            let req = self
                .client
                .request(Method::GET, "organizations/show_many")
                .with_query("external_ids", chunk.join(","));
            let v = self.client.json(req).await?;
            for o in v
                .get("organizations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let (Some(k), Some(id)) = (
                    o.get("external_id").and_then(Value::as_str),
                    o.get("id").and_then(mapping::id_text),
                ) {
                    out.insert(k.to_owned(), id);
                }
            }
        }
        Ok(out)
    }

    /// `PUT {object}/update_many` with `{object: [{id, ...}]}`; results matched by id.
    async fn run_updates(
        &self,
        object: &str,
        updates: &[(usize, String, Map<String, Value>)],
        results: &mut [Option<PushResult>],
    ) -> Result<(), ConnectorError> {
        for chunk in updates.chunks(BATCH) {
            let records: Vec<Value> = chunk
                .iter()
                .map(|(_, id, body)| {
                    let mut b = body.clone();
                    b.insert(
                        "id".into(),
                        id.parse::<u64>().map(Value::from).unwrap_or(json!(id)),
                    );
                    Value::Object(b)
                })
                .collect();
            let req = self
                .client
                .request(Method::PUT, &format!("{object}/update_many"))
                .with_json(json!({ object: records }));
            let job = self.client.run_job(req).await?;
            for (pos, (i, id, _)) in chunk.iter().enumerate() {
                let r = job
                    .iter()
                    .find(|r| r.get("id").and_then(mapping::id_text).as_deref() == Some(id))
                    .or_else(|| {
                        job.iter()
                            .find(|r| r.get("index").and_then(Value::as_u64) == Some(pos as u64))
                    });
                answer(results, *i, item_result(r.cloned()));
            }
        }
        Ok(())
    }

    /// `DELETE /{object}/destroy_many?ids=…`, at most 100 ids per job. Zendesk documents
    /// deletion results only as `{"success": …}` for the whole job. Per-id results, if a
    /// job gives them, are read like the others', and an id already gone counts as done.
    async fn run_deletes(
        &self,
        object: &str,
        deletes: &[(usize, String)],
        results: &mut [Option<PushResult>],
    ) -> Result<(), ConnectorError> {
        for chunk in deletes.chunks(BATCH) {
            let ids: Vec<&str> = chunk.iter().map(|(_, id)| id.as_str()).collect();
            let req = self
                .client
                .request(Method::DELETE, &format!("{object}/destroy_many"))
                .with_query("ids", ids.join(","))
                // Deleting what is already deleted changes nothing.
                .with_retry(true);
            match self.client.run_job_outcome(req).await {
                Ok(job) => {
                    for (i, id) in chunk {
                        answer(results, *i, delete_result(&job, id));
                    }
                }
                // The job failed as a whole: every id in it gets the answer.
                Err(e @ ConnectorError::Permanent { .. }) => {
                    for (i, _) in chunk {
                        answer(results, *i, Err(e.clone()));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn push_tickets(&self, items: &[PushItem]) -> Result<Vec<PushResult>, ConnectorError> {
        let mut results: Vec<Option<PushResult>> = vec![None; items.len()];
        let deletes: Vec<(usize, String)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match &item.op {
                PushOp::Delete { external_id } => Some((i, external_id.clone())),
                _ => None,
            })
            .collect();
        // Deletes first: a batch-wide error there (a full job queue, say) hands the batch
        // back before any create was sent, so no confirmed ticket is left unrecorded.
        // Deleted tickets go to Zendesk's "deleted tickets" view; the export, read without
        // `exclude_deleted`, lists them with the status `deleted`.
        self.run_deletes("tickets", &deletes, &mut results).await?;
        let mut sent = !deletes.is_empty();
        for (i, item) in items.iter().enumerate() {
            let body = mapping::payload(&item.fields);
            let r = match &item.op {
                PushOp::Create { canonical_id } => {
                    let key = canonical_id.to_string();
                    // A ticket this record already has (made by a create whose answer was
                    // lost, perhaps before the idempotency key's unknown lifetime ran out)
                    // is adopted, not made twice: so creates need not wait for the export's
                    // held-back minute after a start.
                    let found = match self.ticket_by_external_id(&key).await {
                        Ok(found) => found,
                        Err(
                            e @ (ConnectorError::Auth(_)
                            | ConnectorError::RateLimited { .. }
                            | ConnectorError::Transient(_)),
                        ) if !sent => return Err(e),
                        Err(e) => {
                            answer(&mut results, i, Err(e));
                            continue;
                        }
                    };
                    if let Some(id) = found {
                        let req = self
                            .client
                            .request(Method::PUT, &format!("tickets/{id}"))
                            .with_json(json!({ "ticket": body }));
                        let r = self.client.json(req).await.map(|_| id);
                        sent = true;
                        answer(&mut results, i, r);
                        continue;
                    }
                    let mut body = body;
                    body.insert("external_id".into(), json!(key));
                    // The key is the canonical id: every retry of this create is the same
                    // request to Zendesk, which answers with the ticket it made.
                    let req = self
                        .client
                        .request(Method::POST, "tickets")
                        .with_header("Idempotency-Key", canonical_id.to_string())
                        .with_json(json!({ "ticket": body }))
                        .with_retry(true);
                    self.client.json(req).await
                }
                // Deleted just now in this batch: an update would answer 404, or revive it.
                PushOp::Update { external_id } if deletes.iter().any(|(_, d)| d == external_id) => {
                    answer(&mut results, i, Ok(external_id.clone()));
                    continue;
                }
                PushOp::Update { external_id } => {
                    let req = self
                        .client
                        .request(Method::PUT, &format!("tickets/{external_id}"))
                        .with_json(json!({ "ticket": body }));
                    self.client.json(req).await
                }
                PushOp::Delete { .. } => continue,
            };
            let result = match r {
                Ok(v) => v
                    .pointer("/ticket/id")
                    .and_then(mapping::id_text)
                    .ok_or_else(|| malformed("ticket answer without ticket.id")),
                // A batch-wide condition: hand the whole batch back.
                Err(
                    e @ (ConnectorError::Auth(_)
                    | ConnectorError::RateLimited { .. }
                    | ConnectorError::Transient(_)),
                ) if !sent => return Err(e),
                Err(e) => Err(e),
            };
            answer(&mut results, i, result);
            sent = true;
        }
        Ok(finish(results))
    }
}

/// A cursor export page (users, tickets): its changes, and the cursor after it (`c:<after>`,
/// else the one it was read from).
fn export_page(object: &str, v: &Value, cursor: Option<&str>) -> Result<Fetched, ConnectorError> {
    let records = v
        .get(object)
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(&format!("export without `{object}`")))?;
    let solved: BTreeMap<String, Value> = v
        .get("metric_sets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let id = m.get("ticket_id").and_then(mapping::id_text)?;
            Some((id, m.get("solved_at")?.clone()))
        })
        .collect();
    let mut out = Fetched::default();
    for r in records {
        let mapped = match object {
            "users" => mapping::user(r),
            _ => {
                let solved_at = r
                    .get("id")
                    .and_then(mapping::id_text)
                    .and_then(|id| solved.get(&id));
                mapping::ticket(r, solved_at).map(Some)
            }
        };
        match mapped {
            Ok(Some(c)) => out.changes.push(c),
            Ok(None) => {}
            Err(e) => out.reject(object, r, e),
        }
    }
    let after = v.get("after_cursor").and_then(Value::as_str);
    out.cursor = after
        .map(|c| format!("c:{c}"))
        .or_else(|| cursor.map(str::to_owned));
    out.more = v.get("end_of_stream").and_then(Value::as_bool) == Some(false);
    Ok(out)
}

/// A time export page of organizations read from `start`, `seen` the ids of that second
/// already handed out.
fn organizations_page(
    v: &Value,
    start: i64,
    seen: &BTreeSet<String>,
) -> Result<Fetched, ConnectorError> {
    let records = v
        .get("organizations")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("export without `organizations`"))?;
    let end_time = v
        .get("end_time")
        .and_then(Value::as_i64)
        .unwrap_or(start)
        .max(start);
    let mut out = Fetched::default();
    let mut emitted = BTreeSet::new();
    let mut at_end: BTreeSet<String> = if end_time == start {
        seen.clone()
    } else {
        BTreeSet::new()
    };
    for r in records {
        match mapping::organization(r) {
            Ok(c) => {
                let ts = c.source_updated_at.timestamp();
                if ts == end_time {
                    at_end.insert(c.external_id.clone());
                }
                let repeat = ts == start && seen.contains(&c.external_id);
                if !repeat && emitted.insert(c.external_id.clone()) {
                    out.changes.push(c);
                }
            }
            Err(e) => out.reject("organizations", r, e),
        }
    }
    let end_of_stream = v
        .get("end_of_stream")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    out.more = !end_of_stream;
    if out.more && end_time == start && out.changes.is_empty() {
        // The API did not move past a second it has fully served: waiting for the
        // next interval beats spinning on the same page.
        tracing::warn!(
            start_time = start,
            "zendesk organization export did not advance"
        );
        out.more = false;
    }
    let ids: Vec<&str> = at_end.iter().map(String::as_str).collect();
    out.cursor = Some(format!("t:{end_time}:{}", ids.join(",")));
    Ok(out)
}

/// The job's result for each of `n` submitted items: by `index` when given, else by
/// position.
fn by_index(job: &[Value], n: usize) -> Vec<Option<Value>> {
    let mut out = vec![None; n];
    let indexed = job.iter().any(|r| r.get("index").is_some());
    for (pos, r) in job.iter().enumerate() {
        let at = if indexed {
            r.get("index").and_then(Value::as_u64).map(|i| i as usize)
        } else {
            Some(pos)
        };
        if let Some(slot) = at.and_then(|i| out.get_mut(i)) {
            *slot = Some(r.clone());
        }
    }
    out
}

/// A deletion job's answer for `id`: done unless a result names it as failed for another
/// reason than being gone already. A job that failed part way and does not name `id`
/// may have stopped before it: tried again, not counted as done.
fn delete_result(job: &JobOutcome, id: &str) -> PushResult {
    let named = job
        .results
        .iter()
        .find(|r| r.get("id").and_then(mapping::id_text).as_deref() == Some(id));
    match named {
        Some(r) if r.get("error").and_then(Value::as_str) == Some("RecordNotFound") => {
            Ok(id.to_owned())
        }
        Some(r) => item_result(Some(r.clone())),
        None if job.completed => Ok(id.to_owned()),
        None => Err(ConnectorError::Transient(format!(
            "zendesk deletion job failed before it reached {id}"
        ))),
    }
}

/// One job result: the record's id, or why Zendesk refused it.
fn item_result(r: Option<Value>) -> PushResult {
    let Some(r) = r else {
        // Never marked synced without confirmation: retry (creates are upserts).
        return Err(ConnectorError::Transient(
            "the job reported no result for this item".into(),
        ));
    };
    let failed = r.get("status").and_then(Value::as_str) == Some("Failed")
        || r.get("success").and_then(Value::as_bool) == Some(false)
        || r.get("error").is_some_and(|e| !e.is_null());
    if failed {
        return Err(ConnectorError::Permanent {
            detail: describe_error(Some(&r)).unwrap_or_else(|| "failed".into()),
            status: Some(422),
            body: Some(r.to_string()),
        });
    }
    r.get("id")
        .and_then(mapping::id_text)
        .ok_or_else(|| malformed("job result without an id"))
}

fn finish(results: Vec<Option<PushResult>>) -> Vec<PushResult> {
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(ConnectorError::Transient("item was not sent".into()))))
        .collect()
}

fn start_time(cursor: Option<&str>) -> Result<i64, ConnectorError> {
    Ok(time_cursor(cursor)?.0)
}

/// `t:<start_time>:<ids>` (or nothing: the beginning).
fn time_cursor(cursor: Option<&str>) -> Result<(i64, BTreeSet<String>), ConnectorError> {
    let Some(c) = cursor else {
        return Ok((0, BTreeSet::new()));
    };
    let bad = || permanent(format!("unreadable zendesk cursor `{c}`"));
    let rest = c.strip_prefix("t:").ok_or_else(bad)?;
    let (t, ids) = rest.split_once(':').unwrap_or((rest, ""));
    let t = t.parse().map_err(|_| bad())?;
    Ok((
        t,
        ids.split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    ))
}

/// A user's, organization's or ticket's page in the Agent Workspace; none behind a
/// configured `base_url` (a simulator, a proxy).
fn agent_url(p: &ZendeskParams, object: &str, id: &str) -> Option<String> {
    let sub = p.subdomain.as_deref().filter(|_| p.base_url.is_none())?;
    matches!(object, "users" | "organizations" | "tickets")
        .then(|| format!("https://{sub}.zendesk.com/agent/{object}/{id}"))
}

#[async_trait]
impl Connector for ZendeskConnector {
    /// The Agent Workspace page of a user, organization or ticket.
    fn record_url(&self, object: &str, external_id: &str) -> Option<String> {
        agent_url(&self.params, object, external_id)
    }

    fn capabilities(&self) -> Capabilities {
        let obj = |name: &str, kind, write| ObjectCapability {
            name: name.into(),
            kind,
            read: true,
            write,
        };
        Capabilities {
            objects: vec![
                obj("users", Kind::Person, true),
                obj("organizations", Kind::Organization, true),
                obj("tickets", Kind::Ticket, self.params.ticket_writes),
            ],
            batch_size: BATCH,
            webhooks: self.verifier.is_some(),
        }
    }

    async fn fetch(&self, object: &str, cursor: Option<&str>) -> Result<Fetched, ConnectorError> {
        match object {
            "users" | "tickets" => self.fetch_cursor_export(object, cursor).await,
            "organizations" => self.fetch_organizations(cursor).await,
            other => Err(permanent(format!("zendesk has no object `{other}`"))),
        }
    }

    /// `show_many` records carry `updated_at`, the record's own time.
    fn reads_by_id_carry_modified_times(&self) -> bool {
        true
    }

    /// Users are pushed with `create_or_update_many` (matched on external id, then email);
    /// an organization whose name is taken is looked up by name and adopted; a ticket is
    /// looked up by the external id revsync gives it (the canonical id) before it is made.
    fn creates_match_existing(&self, object: &str) -> bool {
        matches!(object, "users" | "organizations" | "tickets")
    }

    async fn fetch_by_ids(
        &self,
        object: &str,
        ids: &[String],
    ) -> Result<Vec<Change>, ConnectorError> {
        let records = match object {
            "users" | "organizations" | "tickets" => self.show_many(object, ids).await?,
            other => return Err(permanent(format!("zendesk has no object `{other}`"))),
        };
        let mut out = Vec::new();
        for r in &records {
            let c = match object {
                "users" => mapping::user(r),
                "organizations" => mapping::organization(r).map(Some),
                _ => mapping::ticket(r, None).map(Some),
            };
            match c {
                Ok(Some(c)) => out.push(c),
                Ok(None) => {}
                Err(e) => tracing::warn!(object, error = %e, "skipping unreadable zendesk record"),
            }
        }
        Ok(out)
    }

    async fn push(
        &self,
        object: &str,
        items: &[PushItem],
    ) -> Result<Vec<PushResult>, ConnectorError> {
        match object {
            "users" => self.push_users(items).await,
            "organizations" => self.push_organizations(items).await,
            "tickets" if self.params.ticket_writes => self.push_tickets(items).await,
            "tickets" => Err(permanent(
                "tickets are read-only unless `ticket_writes: true`".into(),
            )),
            other => Err(permanent(format!("zendesk has no object `{other}`"))),
        }
    }

    fn verify_webhook(&self, req: &WebhookRequest<'_>) -> Result<Vec<WebhookEvent>, WebhookError> {
        match &self.verifier {
            Some(v) => v.verify(req),
            None => Err(WebhookError::BadSignature(
                "no webhook_secret configured".into(),
            )),
        }
    }

    /// A push waits on its job most of its time. Twice as many pushes as job slots: while
    /// some wait for their jobs, others are built and recorded, and the client keeps the
    /// jobs themselves within `max_jobs_in_flight`. Creates are upserts keyed by the
    /// canonical id (organizations found by it, tickets carry it as their idempotency
    /// key), so two pushes of one record in flight together still make one copy.
    fn pushes_in_flight(&self) -> usize {
        self.params.max_jobs_in_flight.saturating_mul(2)
    }

    fn rate_limit(&self) -> Option<LimiterStats> {
        Some(self.client.stats())
    }

    /// Built-in attributes as documented, custom fields from the account (`describe.rs`).
    async fn describe(&self, object: &str) -> Result<revsync_sdk::ObjectSchema, ConnectorError> {
        self.describe_object(object).await
    }

    /// The three exports share the exports-per-minute budget.
    fn min_poll_interval(&self) -> Duration {
        let per_minute = u64::from(self.params.exports_per_minute);
        Duration::from_secs(180_u64.checked_div(per_minute).unwrap_or(180))
            .max(Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_copy_links_to_the_agent_workspace_only_on_zendesk_itself() {
        let mut p: super::ZendeskParams = serde_json::from_value(serde_json::json!({
            "subdomain": "acme", "auth": { "method": "api_token", "email": "ops@acme.example", "token": "t" }
        }))
        .unwrap();
        assert_eq!(
            super::agent_url(&p, "tickets", "42").as_deref(),
            Some("https://acme.zendesk.com/agent/tickets/42")
        );
        assert_eq!(super::agent_url(&p, "ticket_metrics", "42"), None);
        p.base_url = Some("http://127.0.0.1:9999/api/v2".into());
        assert_eq!(super::agent_url(&p, "tickets", "42"), None);
    }

    use super::*;

    #[test]
    fn time_cursors_round_trip() {
        assert_eq!(time_cursor(None).unwrap(), (0, BTreeSet::new()));
        let (t, ids) = time_cursor(Some("t:1700000000:4,5")).unwrap();
        assert_eq!(t, 1_700_000_000);
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), vec!["4", "5"]);
        assert_eq!(time_cursor(Some("t:17:")).unwrap().0, 17);
        assert!(time_cursor(Some("garbage")).is_err());
    }

    #[test]
    fn deletion_results_count_gone_as_done_and_keep_other_failures() {
        // Zendesk documents only the whole-job form; per-id results are read if given.
        let job = JobOutcome {
            results: vec![
                json!({"id": 1, "action": "delete", "success": true, "status": "Deleted"}),
                json!({"id": 2, "success": false, "status": "Failed", "error": "RecordNotFound"}),
                json!({"id": 3, "success": false, "status": "Failed", "error": "PermissionDenied",
                    "details": "agents cannot be deleted here"}),
            ],
            completed: true,
        };
        assert_eq!(delete_result(&job, "1").unwrap(), "1");
        assert_eq!(delete_result(&job, "2").unwrap(), "2", "already gone: done");
        assert!(matches!(
            delete_result(&job, "3"),
            Err(ConnectorError::Permanent { .. })
        ));
        assert_eq!(
            delete_result(&job, "4").unwrap(),
            "4",
            "completed, not named"
        );
        let bare = JobOutcome {
            results: Vec::new(),
            completed: true,
        };
        assert_eq!(
            delete_result(&bare, "5").unwrap(),
            "5",
            "a job answering only success"
        );
        // A job that failed part way names where it stopped; the ids it never reached
        // are tried again, not counted as deleted.
        let failed = JobOutcome {
            completed: false,
            ..job
        };
        assert_eq!(delete_result(&failed, "1").unwrap(), "1");
        assert!(matches!(
            delete_result(&failed, "4"),
            Err(ConnectorError::Transient(_))
        ));
    }

    #[test]
    fn job_results_are_matched_by_index_and_failures_kept_per_item() {
        let job = vec![
            json!({"index": 1, "id": 11, "status": "Created"}),
            json!({"index": 0, "status": "Failed", "error": "RecordInvalid", "details": "email"}),
        ];
        let r = by_index(&job, 3);
        assert_eq!(item_result(r[1].clone()).unwrap(), "11");
        assert!(matches!(
            item_result(r[0].clone()),
            Err(ConnectorError::Permanent { .. })
        ));
        assert!(matches!(
            item_result(r[2].clone()),
            Err(ConnectorError::Transient(_))
        ));
    }
}
