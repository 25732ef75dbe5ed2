//! revsync connector for any REST API (`type: rest`), declared entirely in the connector's
//! YAML: auth, each object's list request, record selector, paging, incremental read, writes
//! and signed webhooks. Also (feature `sim`) a webinar platform simulator to run it against.
//!
//! The connector file's `objects:` name the objects and map their fields as for any
//! connector; each needs its request declarations in `params.objects.<name>`, and its
//! `key:` is the record's id field (`id` when not given).

mod client;
pub mod config;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod read;
#[cfg(feature = "sim")]
pub mod sim;
mod webhook;
mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use revsync_sdk::http::{LimiterStats, Limits};
use revsync_sdk::{
    BuildContext, Capabilities, Change, Connector, ConnectorError, ConnectorType, Fetched,
    FieldSchema, Kind, ObjectCapability, ObjectDecl, ObjectSchema, ParamError, PushItem,
    PushResult, WebhookError, WebhookEvent, WebhookRequest,
};
use serde_json::Value;

use crate::client::RestClient;
use crate::config::{ObjectApi, Params, TimeFormat};
use crate::read::{Cursor, Decode, Paths};

/// Without a `rate_limit:` in the connector file: a budget few APIs refuse.
pub const DEFAULT_LIMITS: (u32, u64) = (60, 60);

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The connector type registered with the daemon.
pub struct Rest;

impl ConnectorType for Rest {
    fn name(&self) -> &'static str {
        "rest"
    }

    fn objects(&self) -> &'static [(&'static str, Kind)] {
        &[]
    }

    fn open_objects(&self) -> bool {
        true
    }

    fn validate_params(&self, params: &Value) -> Result<(), Vec<ParamError>> {
        Params::parse(params).map(|_| ())
    }

    fn validate_object(&self, params: &Value, name: &str, object: &ObjectDecl) -> Vec<ParamError> {
        let declared = params.get("objects").and_then(|o| o.get(name));
        let Some(api) = declared else {
            return vec![ParamError::new(
                "",
                format!("`params.objects.{name}` declares no requests for it"),
            )
            .with_example(format!(
                "params:\n  objects:\n    {name}:\n      list: {{ path: /v1/{name}, records: $.data }}"
            ))];
        };
        let mut errors = Vec::new();
        let has = |k: &str| api.get(k).is_some_and(|v| !v.is_null());
        if object.write && !object.read && !has("create") {
            errors.push(ParamError::new(
                "direction",
                format!("`out` but `params.objects.{name}` declares no `create` request"),
            ));
        }
        errors
    }

    fn params_example(&self) -> &'static str {
        config::EXAMPLE
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Option<Result<Arc<dyn Connector>, ConnectorError>> {
        Some(RestConnector::new(ctx).map(|c| Arc::new(c) as Arc<dyn Connector>))
    }
}

struct Object {
    name: String,
    kind: Kind,
    key: String,
    read: bool,
    write: bool,
    api: ObjectApi,
    paths: Paths,
    get_record: Option<serde_json_path::JsonPath>,
}

impl Object {
    fn decode(&self) -> Decode<'_> {
        Decode {
            object: &self.name,
            key: &self.key,
            updated_at: self.api.updated_at.as_deref().or(self
                .api
                .list
                .incremental
                .as_ref()
                .map(|i| i.field.as_str())),
            external_id_field: self.api.external_id_field.as_deref(),
            format: self
                .api
                .list
                .incremental
                .as_ref()
                .map_or(TimeFormat::Rfc3339, |i| i.format),
            now: Utc::now(),
            add_fields: &self.api.add_fields,
        }
    }
}

pub struct RestConnector {
    client: RestClient,
    base_url: String,
    objects: BTreeMap<String, Object>,
    webhook: Option<webhook::Scheme>,
}

fn permanent(detail: impl Into<String>) -> ConnectorError {
    ConnectorError::Permanent {
        detail: detail.into(),
        status: None,
        body: None,
    }
}

impl RestConnector {
    pub fn new(ctx: &BuildContext<'_>) -> Result<Self, ConnectorError> {
        let p = Params::parse(ctx.params).map_err(|e| {
            permanent(
                e.iter()
                    .map(|e| format!("params.{}: {}", e.path, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let limits = ctx
            .rate_limit
            .resolve(Limits::new(
                DEFAULT_LIMITS.0,
                Duration::from_secs(DEFAULT_LIMITS.1),
            ))
            .map_err(permanent)?;
        let cap = ctx.http.max_response_bytes().map_err(permanent)?;
        let client = RestClient::new(&p, limits, cap, ctx.shutdown.clone())?;
        let mut objects = BTreeMap::new();
        for (name, decl) in ctx.objects {
            let api = p
                .objects
                .get(name)
                .cloned()
                .ok_or_else(|| permanent(format!("params.objects.{name} is not declared")))?;
            let paths = Paths::compile(&api.list).map_err(permanent)?;
            let get_record = api
                .get
                .as_ref()
                .map(|g| config::path(&g.record))
                .transpose()
                .map_err(permanent)?;
            let write = decl.write && (api.create.is_some() || api.update.is_some());
            objects.insert(
                name.clone(),
                Object {
                    name: name.clone(),
                    kind: decl.kind,
                    key: decl.key.clone().unwrap_or_else(|| "id".into()),
                    read: decl.read,
                    write,
                    api,
                    paths,
                    get_record,
                },
            );
        }
        let webhook = p
            .webhook
            .clone()
            .map(webhook::Scheme::new)
            .transpose()
            .map_err(permanent)?;
        Ok(Self {
            client,
            base_url: p.base_url.trim_end_matches('/').to_owned(),
            objects,
            webhook,
        })
    }

    fn object(&self, name: &str) -> Result<&Object, ConnectorError> {
        self.objects
            .get(name)
            .ok_or_else(|| permanent(format!("no object `{name}` in this connector's file")))
    }
}

#[async_trait]
impl Connector for RestConnector {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            objects: self
                .objects
                .values()
                .map(|o| ObjectCapability {
                    name: o.name.clone(),
                    kind: o.kind,
                    read: o.read,
                    write: o.write,
                })
                .collect(),
            // One request per record: a batch is only how many the dispatcher hands over.
            batch_size: 25,
            webhooks: self.webhook.is_some(),
        }
    }

    async fn fetch(&self, object: &str, cursor: Option<&str>) -> Result<Fetched, ConnectorError> {
        let o = self.object(object)?;
        let position = Cursor::parse(cursor);
        let req = read::request(&o.api.list, &position, &self.base_url)?;
        let answer = self.client.send(req).await?;
        let link = answer.header("link").map(str::to_owned);
        let body: Value = answer.json()?;
        read::page(
            &o.api.list,
            &o.paths,
            &o.decode(),
            &position,
            &body,
            link.as_deref(),
        )
    }

    async fn fetch_by_ids(
        &self,
        object: &str,
        ids: &[String],
    ) -> Result<Vec<Change>, ConnectorError> {
        let o = self.object(object)?;
        let (Some(get), Some(record)) = (&o.api.get, &o.get_record) else {
            return Err(permanent(format!(
                "params.objects.{object} declares no `get` request: records cannot be read by id"
            )));
        };
        let decode = o.decode();
        let mut out = Vec::new();
        for id in ids {
            let path = write::fill_path(&get.path, Some(id), &BTreeMap::new())?;
            let answer = match self
                .client
                .send(revsync_sdk::http::ApiRequest::get(path))
                .await
            {
                Err(ConnectorError::NotFound) => continue,
                other => other?,
            };
            let body: Value = answer.json()?;
            let Some(r) = record.query(&body).all().into_iter().next() else {
                continue;
            };
            match decode.change(r) {
                Ok((c, _)) => out.push(c),
                Err(e) => {
                    tracing::warn!(object, id = %id, problem = %e, "a record read by id cannot be read")
                }
            }
        }
        Ok(out)
    }

    async fn push(
        &self,
        object: &str,
        items: &[PushItem],
    ) -> Result<Vec<PushResult>, ConnectorError> {
        let o = self.object(object)?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(write::push_one(&self.client, &o.api, &o.key, item).await);
        }
        Ok(out)
    }

    fn verify_webhook(&self, req: &WebhookRequest<'_>) -> Result<Vec<WebhookEvent>, WebhookError> {
        let Some(scheme) = &self.webhook else {
            return Err(WebhookError::Malformed(
                "this connector declares no webhook".into(),
            ));
        };
        let o = self
            .objects
            .get(&scheme.config.object)
            .ok_or_else(|| WebhookError::Malformed("the webhook's object is not synced".into()))?;
        scheme.verify(req, &o.decode())
    }

    fn rate_limit(&self) -> Option<LimiterStats> {
        Some(self.client.api.limiter().stats())
    }

    async fn describe(&self, object: &str) -> Result<ObjectSchema, ConnectorError> {
        let o = self.object(object)?;
        let req = read::request(&o.api.list, &Cursor::default(), &self.base_url)?;
        let body: Value = self.client.send(req).await?.json()?;
        let mut seen: BTreeMap<String, &'static str> = BTreeMap::new();
        for r in read::select(&o.paths.records, &body).into_iter().take(50) {
            for (k, v) in r.as_object().into_iter().flatten() {
                let ty = match v {
                    Value::Null => continue,
                    Value::Bool(_) => "boolean",
                    Value::Number(_) => "number",
                    Value::String(_) => "string",
                    Value::Array(_) => "array",
                    Value::Object(_) => "object",
                };
                seen.entry(k.clone()).or_insert(ty);
            }
        }
        let writable: BTreeSet<String> = o
            .api
            .update
            .as_ref()
            .and_then(|u| u.body.as_ref())
            .map(write::template_fields)
            .unwrap_or_default();
        Ok(ObjectSchema {
            name: object.to_owned(),
            label: Some(o.api.list.path.clone()),
            fields: seen
                .into_iter()
                .map(|(k, ty)| {
                    let mut f = FieldSchema::new(k.clone(), k.clone(), ty);
                    f.read_only = o.api.update.as_ref().is_some_and(|u| u.body.is_some())
                        && !writable.contains(&k);
                    if k == o.key {
                        f.read_only = true;
                    }
                    f
                })
                .collect(),
        })
    }
}
