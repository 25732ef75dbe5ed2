//! Salesforce REST connector (Lead, Contact, Account, Opportunity).
//!
//! Reads are SOQL pages in (SystemModstamp, Id) order through `queryAll` (deletions
//! included); writes are sObject Collections with per-item results, creates being upserts
//! on the configured External ID field so a retried create never duplicates. Every call
//! spends the org's shared daily allocation, so a reserve is never touched (`client.rs`).
//! A read from the beginning brings each Opportunity's past from `OpportunityHistory`
//! (`history.rs`, issue 20).

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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use revsync_sdk::http::{ApiRequest, LimiterStats, Limits, RetryPolicy};
use revsync_sdk::{
    BuildContext, Capabilities, Change, Connector, ConnectorError, ConnectorType, Fetched, Kind,
    LimitScope, ObjectCapability, ParamError, PushItem, PushOp, PushResult, WebhookError,
    WebhookEvent, WebhookRequest,
};
use serde_json::{json, Value};

use crate::client::{HttpSettings, Quota, QuotaStatus, SfClient};
use crate::config::SalesforceParams;
use crate::mapping::{Cursor, ReadState, OBJECTS};

/// Records per sObject Collections call (documented maximum).
pub const BATCH_SIZE: usize = 200;

/// The `salesforce` connector type.
pub struct Salesforce;

const OBJECT_KINDS: &[(&str, Kind)] = &[
    ("Lead", Kind::Person),
    ("Contact", Kind::Person),
    ("Account", Kind::Organization),
    ("Opportunity", Kind::Deal),
];

impl ConnectorType for Salesforce {
    fn name(&self) -> &'static str {
        "salesforce"
    }

    fn objects(&self) -> &'static [(&'static str, Kind)] {
        OBJECT_KINDS
    }

    fn validate_params(&self, params: &serde_json::Value) -> Result<(), Vec<ParamError>> {
        config::SalesforceParams::from_value(params).map(|_| ())
    }

    /// Salesforce's required fields of the standard objects (REQUIRED_FIELD_MISSING).
    fn required_for_create(&self, object: &str) -> &'static [&'static str] {
        match object {
            "Lead" => &["LastName", "Company"],
            "Contact" => &["LastName"],
            "Account" => &["Name"],
            "Opportunity" => &["Name", "StageName", "CloseDate"],
            _ => &[],
        }
    }

    fn params_example(&self) -> &'static str {
        "params:\n  auth:\n    flow: refresh_token\n    token_url: https://login.salesforce.com/services/oauth2/token\n    client_id: ${SF_CLIENT_ID}\n    client_secret: ${SF_CLIENT_SECRET}\n    refresh_token: ${SF_REFRESH_TOKEN}\n  organization_id: 00D000000000001"
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Option<Result<Arc<dyn Connector>, ConnectorError>> {
        let mut params = match SalesforceParams::from_value(ctx.params) {
            Ok(p) => p,
            Err(errors) => {
                let detail = errors
                    .iter()
                    .map(|e| format!("params.{}: {}", e.path, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Some(Err(permanent(detail)));
            }
        };
        // SOQL names its fields: select what the YAML mapping reads, beside the fields the
        // protocol needs (Id, SystemModstamp, IsDeleted, relations).
        for (object, fields) in ctx.mapped_fields {
            let extra = params.fields.entry(object.clone()).or_default();
            for f in fields {
                if !extra.contains(f) {
                    extra.push(f.clone());
                }
            }
        }
        // No per-second REST limit is documented, only 25 concurrent long requests and the
        // daily allocation (enforced by the quota); this pacing keeps bursts polite.
        let limits = match ctx
            .rate_limit
            .resolve(Limits::new(25, Duration::from_secs(1)))
        {
            Ok(l) => l,
            Err(e) => return Some(Err(permanent(e))),
        };
        let max_response_bytes = match ctx.http.max_response_bytes() {
            Ok(n) => n,
            Err(e) => return Some(Err(permanent(e))),
        };
        let http = HttpSettings {
            limits,
            retry: RetryPolicy::default(),
            timeout: Duration::from_millis(params.timeout_ms),
            max_response_bytes,
            shutdown: ctx.shutdown.clone(),
        };
        Some(SalesforceConnector::new(params, http).map(|c| Arc::new(c) as Arc<dyn Connector>))
    }
}

pub(crate) fn permanent(detail: impl Into<String>) -> ConnectorError {
    ConnectorError::Permanent {
        detail: detail.into(),
        status: None,
        body: None,
    }
}

/// A running Salesforce connector.
pub struct SalesforceConnector {
    params: SalesforceParams,
    client: SfClient,
}

impl SalesforceConnector {
    pub fn new(params: SalesforceParams, http: HttpSettings) -> Result<Self, ConnectorError> {
        let quota = Arc::new(Quota::new(
            params.daily_reserve_pct,
            Duration::from_secs(params.quota_recheck_secs),
        ));
        let client = SfClient::new(params.auth.clone(), http, quota)?;
        Ok(Self { params, client })
    }

    /// The org's daily allocation as last seen; `reserve_reached` is the
    /// `quota_reserve_reached` state `/status` should show.
    pub fn quota_status(&self) -> QuotaStatus {
        self.client.quota.status()
    }

    fn data_path(&self, rest: &str) -> String {
        format!("/services/data/{}/{rest}", self.params.api_version)
    }

    fn check_object(object: &str) -> Result<(), ConnectorError> {
        if OBJECTS.contains(&object) {
            Ok(())
        } else {
            Err(permanent(format!(
                "unknown object `{object}`, expected one of: {}",
                OBJECTS.join(", ")
            )))
        }
    }

    fn fields(&self, object: &str) -> Vec<String> {
        let mut f: Vec<String> = mapping::default_fields(object, self.params.multi_currency)
            .into_iter()
            .map(str::to_owned)
            .collect();
        for extra in self.params.fields.get(object).into_iter().flatten() {
            if !f.contains(extra) {
                f.push(extra.clone());
            }
        }
        // The External ID revsync upserts on: a copy it created names its record.
        let ext = &self.params.external_id_field;
        if !f.contains(ext) {
            f.push(ext.clone());
        }
        f
    }

    /// The canonical id a copy revsync created carries in the External ID field.
    fn made_for(&self, mut change: Change) -> Change {
        change.canonical_id =
            revsync_sdk::canonical_id_in(change.fields.get(&self.params.external_id_field));
        change
    }

    /// Run a query and follow `nextRecordsUrl` to its end: query locators expire, so a
    /// page never leaves one behind in the stored cursor.
    async fn query(&self, soql: &str) -> Result<Vec<Value>, ConnectorError> {
        Ok(self.query_at(soql).await?.0)
    }

    /// [`Self::query`], and the time the org answered as of: the earlier of our clock
    /// before asking and the first answer's `Date`, so a server clock behind ours never
    /// makes a record look older than it is.
    async fn query_at(
        &self,
        soql: &str,
    ) -> Result<(Vec<Value>, chrono::DateTime<chrono::Utc>), ConnectorError> {
        let resource = if self.params.include_deleted {
            "queryAll"
        } else {
            "query"
        };
        let mut req = ApiRequest::get(self.data_path(resource)).with_query("q", soql);
        let mut records = Vec::new();
        let mut at = chrono::Utc::now();
        let mut first = true;
        loop {
            let resp = self.client.send(req).await?;
            if std::mem::take(&mut first) {
                if let Some(date) = server_date(&resp.headers) {
                    at = at.min(date);
                }
            }
            match query_page(&resp.json()?, &mut records)? {
                Some(next) => req = ApiRequest::get(next),
                None => return Ok((records, at)),
            }
        }
    }

    /// The changes of one read's records not handed out before, and the state after them.
    fn page(
        &self,
        object: &str,
        from: ReadState,
        records: &[Value],
        answered_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Fetched, ConnectorError> {
        let mut out = Fetched {
            more: records.len() >= self.params.page_size as usize,
            ..Fetched::default()
        };
        let backfill = from.backfill;
        let mut read = Vec::with_capacity(records.len());
        for r in records {
            match mapping::to_change(object, r) {
                Ok((change, at)) => read.push((self.made_for(change), at)),
                Err(e) => out.reject(object, r, e),
            }
        }
        // One second more than the overlap: a stamp is truncated to its second, so a
        // record committed within the overlap may carry the second before it.
        let horizon = step_back(answered_at, self.params.overlap_secs.saturating_add(1));
        let (fresh, mut next) = from.advance(read, out.more, horizon);
        // A backfill ends with the first page that is not full: the read has caught up.
        next.backfill = backfill && out.more;
        out.changes = fresh;
        out.cursor = Some(next.encode()?);
        Ok(out)
    }

    /// Puts each Opportunity's past states (`history.rs`) before its change: the engine
    /// applies a page's changes in order, each newer than the last, so every one is kept in
    /// the record's history. An org that refuses `OpportunityHistory` (no access) leaves
    /// the page as it was; anything retryable fails the page, which is read again.
    async fn with_past(&self, out: &mut Fetched) -> Result<(), ConnectorError> {
        let ids: Vec<String> = out
            .changes
            .iter()
            .filter(|c| !c.deleted)
            .map(|c| c.external_id.clone())
            .collect();
        let mut rows = Vec::new();
        for chunk in ids.chunks(BATCH_SIZE) {
            match self.query(&history::soql(chunk)).await {
                Ok(r) => rows.extend(r),
                Err(ConnectorError::Permanent { detail, .. }) => {
                    tracing::warn!(error = %detail, "salesforce OpportunityHistory not readable, no deal history");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        let by_opp = history::by_opportunity(rows);
        let mut changes = Vec::with_capacity(out.changes.len());
        for c in std::mem::take(&mut out.changes) {
            if let Some(rows) = by_opp.get(&c.external_id) {
                changes.extend(history::past_changes(&c, rows));
            }
            changes.push(c);
        }
        out.changes = changes;
        Ok(())
    }

    async fn write_group(
        &self,
        req: ApiRequest,
        n: usize,
        deleting: bool,
    ) -> Result<Vec<PushResult>, ConnectorError> {
        collection_answer(&self.client.send(req).await?.json()?, n, deleting)
    }
}

/// One page of a query: its records added to `records`, and the path of the next page
/// unless this was the last.
fn query_page(body: &Value, records: &mut Vec<Value>) -> Result<Option<String>, ConnectorError> {
    records.extend(
        body.get("records")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    );
    if body.get("done").and_then(Value::as_bool) != Some(false) {
        return Ok(None);
    }
    body.get("nextRecordsUrl")
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("/services/data/"))
        .map(|u| Some(u.to_owned()))
        .ok_or_else(|| permanent("query answered done:false without a usable nextRecordsUrl"))
}

/// A collection write's answer: one result per record sent, in order.
fn collection_answer(
    body: &Value,
    n: usize,
    deleting: bool,
) -> Result<Vec<PushResult>, ConnectorError> {
    let results = body
        .as_array()
        .ok_or_else(|| permanent("collection answer is not an array of results"))?;
    if results.len() != n {
        return Err(permanent(format!(
            "collection answered {} results for {n} records",
            results.len()
        )));
    }
    Ok(results.iter().map(|r| item_result(r, deleting)).collect())
}

/// One SaveResult/UpsertResult as the item's outcome.
fn item_result(r: &Value, deleting: bool) -> PushResult {
    let id = r["id"].as_str().unwrap_or_default().to_owned();
    if r["success"].as_bool() == Some(true) {
        return Ok(id);
    }
    let errors = r["errors"].as_array().cloned().unwrap_or_default();
    let code = |e: &Value| e["statusCode"].as_str().unwrap_or("UNKNOWN").to_owned();
    let first = errors.first().map(code).unwrap_or_else(|| "UNKNOWN".into());
    match first.as_str() {
        // Already gone is what a delete wanted.
        "ENTITY_IS_DELETED" if deleting && !id.is_empty() => Ok(id),
        "UNABLE_TO_LOCK_ROW" | "ALL_OR_NONE_OPERATION_ROLLED_BACK" => Err(
            ConnectorError::Transient(format!("{first}: the item may succeed when retried")),
        ),
        "REQUEST_LIMIT_EXCEEDED" => Err(ConnectorError::RateLimited {
            retry_after: None,
            scope: LimitScope::Daily,
        }),
        _ => Err(ConnectorError::Permanent {
            detail: errors
                .iter()
                .map(|e| {
                    let fields = e["fields"]
                        .as_array()
                        .map(|f| {
                            f.iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or_default();
                    let msg = e["message"].as_str().unwrap_or("");
                    if fields.is_empty() {
                        format!("{}: {msg}", code(e))
                    } else {
                        format!("{}: {msg} ({fields})", code(e))
                    }
                })
                .collect::<Vec<_>>()
                .join("; "),
            status: Some(200),
            body: Some(r.to_string()),
        }),
    }
}

/// The Lightning record page on `instance`, when it is a Salesforce host.
fn lightning_url(instance: &str, object: &str, id: &str) -> Option<String> {
    let host = reqwest::Url::parse(instance).ok()?.host_str()?.to_owned();
    (host.ends_with(".salesforce.com") || host.ends_with(".force.com")).then(|| {
        format!(
            "{}/lightning/r/{object}/{id}/view",
            instance.trim_end_matches('/')
        )
    })
}

#[async_trait]
impl Connector for SalesforceConnector {
    /// The Lightning record page on the org's instance, once a session has named it.
    fn record_url(&self, object: &str, external_id: &str) -> Option<String> {
        lightning_url(&self.client.instance_url()?, object, external_id)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            objects: OBJECT_KINDS
                .iter()
                .map(|(name, kind)| ObjectCapability {
                    name: (*name).to_owned(),
                    kind: *kind,
                    read: true,
                    write: true,
                })
                .collect(),
            batch_size: BATCH_SIZE,
            webhooks: true,
        }
    }

    async fn fetch(&self, object: &str, cursor: Option<&str>) -> Result<Fetched, ConnectorError> {
        Self::check_object(object)?;
        let from = match cursor {
            Some(c) => ReadState::decode(c).map_err(|e| permanent(format!("{object}: {e}")))?,
            // Before any record: no SystemModstamp precedes the epoch.
            None => ReadState {
                backfill: true,
                ..ReadState::at(Cursor {
                    stamp: chrono::DateTime::UNIX_EPOCH,
                    id: mapping::LOWEST_ID.to_owned(),
                })
            },
        };
        let start = cursor.map(|_| from.from());
        let soql =
            mapping::incremental_soql(object, &self.fields(object), start, self.params.page_size);
        let (records, answered_at) = self.query_at(&soql).await?;
        let backfill = from.backfill;
        let mut out = self.page(object, from, &records, answered_at)?;
        if backfill && object == "Opportunity" {
            self.with_past(&mut out).await?;
        }
        Ok(out)
    }

    /// SOQL reads carry `SystemModstamp`, the row's own time.
    fn reads_by_id_carry_modified_times(&self) -> bool {
        true
    }

    async fn fetch_by_ids(
        &self,
        object: &str,
        ids: &[String],
    ) -> Result<Vec<Change>, ConnectorError> {
        Self::check_object(object)?;
        if let Some(bad) = ids.iter().find(|i| !mapping::is_id(i)) {
            return Err(permanent(format!("`{bad}` is not a Salesforce id")));
        }
        let mut changes = Vec::new();
        for chunk in ids.chunks(BATCH_SIZE) {
            let soql = mapping::by_ids_soql(object, &self.fields(object), chunk);
            for r in self.query(&soql).await? {
                match mapping::to_change(object, &r) {
                    Ok((c, _)) => changes.push(self.made_for(c)),
                    Err(e) => tracing::warn!(object, problem = %e, "unreadable record skipped"),
                }
            }
        }
        Ok(changes)
    }

    async fn push(
        &self,
        object: &str,
        items: &[PushItem],
    ) -> Result<Vec<PushResult>, ConnectorError> {
        Self::check_object(object)?;
        if items.len() > BATCH_SIZE {
            return Err(permanent(format!(
                "{} items exceed the collection limit of {BATCH_SIZE}",
                items.len()
            )));
        }
        let ext = &self.params.external_id_field;
        let (mut creates, mut updates, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
        for (i, item) in items.iter().enumerate() {
            match &item.op {
                PushOp::Create { canonical_id } => {
                    let mut r = mapping::to_record(object, &item.fields);
                    r.insert(ext.clone(), json!(canonical_id.to_string()));
                    creates.push((i, Value::Object(r)));
                }
                PushOp::Update { external_id } => {
                    let mut r = mapping::to_record(object, &item.fields);
                    r.insert("id".into(), json!(external_id));
                    updates.push((i, Value::Object(r)));
                }
                PushOp::Delete { external_id } => deletes.push((i, external_id.clone())),
            }
        }
        // Upserts by external id, updates by Id and deletes are all safe to send again,
        // so a lost answer is retried rather than reported.
        let mut groups: Vec<(Vec<usize>, ApiRequest, bool)> = Vec::new();
        if !creates.is_empty() {
            let path = self.data_path(&format!("composite/sobjects/{object}/{ext}"));
            let records: Vec<Value> = creates.iter().map(|(_, r)| r.clone()).collect();
            groups.push((
                creates.iter().map(|(i, _)| *i).collect(),
                ApiRequest::new(reqwest::Method::PATCH, path)
                    .with_json(json!({"allOrNone": false, "records": records}))
                    .with_retry(true),
                false,
            ));
        }
        if !updates.is_empty() {
            let records: Vec<Value> = updates.iter().map(|(_, r)| r.clone()).collect();
            groups.push((
                updates.iter().map(|(i, _)| *i).collect(),
                ApiRequest::new(reqwest::Method::PATCH, self.data_path("composite/sobjects"))
                    .with_json(json!({"allOrNone": false, "records": records}))
                    .with_retry(true),
                false,
            ));
        }
        // An id that is not one fails alone: the rest of the batch is still sent.
        let mut results: BTreeMap<usize, PushResult> = BTreeMap::new();
        let (deletes, malformed): (Vec<_>, Vec<_>) =
            deletes.into_iter().partition(|(_, id)| mapping::is_id(id));
        for (i, bad) in malformed {
            results.insert(i, Err(permanent(format!("`{bad}` is not a Salesforce id"))));
        }
        if !deletes.is_empty() {
            let ids: Vec<&str> = deletes.iter().map(|(_, id)| id.as_str()).collect();
            groups.push((
                deletes.iter().map(|(i, _)| *i).collect(),
                ApiRequest::new(
                    reqwest::Method::DELETE,
                    self.data_path("composite/sobjects"),
                )
                .with_query("ids", ids.join(","))
                .with_query("allOrNone", "false"),
                true,
            ));
        }
        for (n, (indexes, req, deleting)) in groups.into_iter().enumerate() {
            match self.write_group(req, indexes.len(), deleting).await {
                Ok(rs) => results.extend(indexes.into_iter().zip(rs)),
                // Nothing written yet, and the cause is the connection, not these records:
                // the whole batch goes back as one. A refusal stays with its own group.
                Err(e) if n == 0 && !matches!(e, ConnectorError::Permanent { .. }) => {
                    return Err(e)
                }
                Err(e) => results.extend(indexes.into_iter().map(|i| (i, Err(e.clone())))),
            }
        }
        Ok(results.into_values().collect())
    }

    /// Outbound Messages are re-sent for up to 24 h unless answered with the SOAP Ack.
    fn webhook_ack(&self, _accepted: usize) -> Option<revsync_sdk::WebhookAck> {
        Some(revsync_sdk::WebhookAck {
            content_type: "text/xml; charset=utf-8",
            body: webhook::ACK_BODY.to_owned(),
        })
    }

    fn verify_webhook(&self, req: &WebhookRequest<'_>) -> Result<Vec<WebhookEvent>, WebhookError> {
        webhook::verify(req, self.params.organization_id.as_deref(), OBJECTS)
    }

    fn rate_limit(&self) -> Option<LimiterStats> {
        self.client.current().map(|s| s.api.limiter().stats())
    }

    /// One describe call, on the API version the reads use; it spends the daily quota
    /// like any other call.
    async fn describe(&self, object: &str) -> Result<revsync_sdk::ObjectSchema, ConnectorError> {
        Self::check_object(object)?;
        let req = ApiRequest::get(self.data_path(&format!("sobjects/{object}/describe")));
        describe::schema(object, &self.client.send(req).await?.json()?)
    }

    fn quota_left(&self) -> Option<revsync_sdk::QuotaLeft> {
        let q = self.quota_status();
        let (used, max) = (q.used?, q.max?);
        Some(revsync_sdk::QuotaLeft {
            remaining: max.saturating_sub(used),
            limit: max,
            window: "day",
        })
    }
}

/// The `Date` of an answer (RFC 7231: `Sun, 06 Nov 1994 08:49:37 GMT`).
fn server_date(headers: &reqwest::header::HeaderMap) -> Option<chrono::DateTime<chrono::Utc>> {
    let text = headers.get(reqwest::header::DATE)?.to_str().ok()?;
    chrono::DateTime::parse_from_rfc2822(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// `stamp - overlap_secs`. The stamp is the API's: stepping back from the start of time
/// stays there rather than panicking (chrono's `-` does).
fn step_back(
    stamp: chrono::DateTime<chrono::Utc>,
    overlap_secs: u64,
) -> chrono::DateTime<chrono::Utc> {
    i64::try_from(overlap_secs)
        .ok()
        .and_then(chrono::Duration::try_seconds)
        .and_then(|d| stamp.checked_sub_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_copy_links_to_its_lightning_page_on_a_salesforce_instance_only() {
        assert_eq!(
            super::lightning_url("https://acme.my.salesforce.com", "Contact", "003A").as_deref(),
            Some("https://acme.my.salesforce.com/lightning/r/Contact/003A/view")
        );
        assert_eq!(
            super::lightning_url("http://127.0.0.1:9999", "Contact", "003A"),
            None
        );
        assert_eq!(
            super::lightning_url("https://salesforce.com.evil.example", "Contact", "1"),
            None
        );
    }

    use super::*;

    #[test]
    fn stepping_back_from_an_api_stamp_at_the_start_of_time_does_not_panic() {
        // chrono reads a signed year, so the API can send this as SystemModstamp.
        let first = mapping::parse_datetime("-262143-01-01T00:00:00.000+0000").unwrap();
        assert_eq!(
            step_back(first, 60),
            chrono::DateTime::<chrono::Utc>::MIN_UTC
        );
        let t = mapping::parse_datetime("2024-01-01T00:01:00.000+0000").unwrap();
        assert_eq!(
            step_back(t, 60),
            mapping::parse_datetime("2024-01-01T00:00:00Z").unwrap()
        );
        assert_eq!(
            step_back(t, u64::MAX),
            chrono::DateTime::<chrono::Utc>::MIN_UTC
        );
    }
}
