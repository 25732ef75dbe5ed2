//! Field mappings: each connector object's YAML `fields:` compiled against the canonical
//! model, and the two directions: source record -> canonical values (`map_in`) and
//! canonical record -> source fields (`project`).
//!
//! Both directions must round-trip (`map_in(project(r)) == r` on the mapped fields):
//! echo suppression compares projections, so an unstable round trip would loop.
// Upstream values (times, numbers) are untrusted: no overflow while parsing them.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use revsync_sdk::{FieldDef, FieldType, Kind, Value};
use serde::Deserialize;
use serde_json::Value as Json;

use super::normalize;
use super::valuemaps;
use crate::config::{Config, ConfigError, Direction};

/// A whole configuration's mappings, by connector id and object.
#[derive(Debug, Clone, Default)]
pub struct Mappings {
    pub objects: Vec<ObjectMapping>,
}

impl Mappings {
    /// Compile every enabled connector's objects; every problem names file, connector, field.
    pub fn compile(config: &Config) -> Result<Self, Vec<ConfigError>> {
        let mut objects = Vec::new();
        let mut errors = Vec::new();
        for (file, c) in &config.connectors {
            for (name, obj) in &c.objects {
                let same_connector: Vec<(String, Kind)> =
                    c.objects.iter().map(|(n, o)| (n.clone(), o.kind)).collect();
                match ObjectMapping::compile(
                    &c.id,
                    &c.type_name,
                    name,
                    obj.kind,
                    obj.direction,
                    &obj.fields,
                    &same_connector,
                ) {
                    Ok(m) => objects.push(ObjectMapping {
                        phone_region: c.phone_region.clone(),
                        fix_name_case: config.daemon.quality.fix_name_case,
                        filter: obj.filter.clone(),
                        create_when: obj.create_when.clone(),
                        ..m
                    }),
                    Err(errs) => errors.extend(errs.into_iter().map(|(field, msg)| {
                        ConfigError::new(file, format!("objects.{name}.fields.{field}"), msg)
                            .connector(Some(&c.id))
                    })),
                }
            }
        }
        Self::check_xrefs(config, &objects, &mut errors);
        if errors.is_empty() {
            Ok(Self { objects })
        } else {
            Err(errors)
        }
    }

    /// Every `xref:` must name a configured connector and one of its objects: otherwise
    /// the ids it carries can never join anything.
    fn check_xrefs(config: &Config, objects: &[ObjectMapping], errors: &mut Vec<ConfigError>) {
        for m in objects {
            for f in &m.fields {
                let Target::Xref { connector, object } = &f.target else {
                    continue;
                };
                let found = config.connectors.iter().find(|(_, c)| &c.id == connector);
                let problem = match found {
                    None => {
                        let ids: Vec<&str> =
                            config.connectors.iter().map(|(_, c)| c.id.as_str()).collect();
                        Some(format!(
                            "xref names connector `{connector}`, which is not configured (connectors: {})",
                            ids.join(", ")
                        ))
                    }
                    Some((_, c)) if !c.objects.contains_key(object) => Some(format!(
                        "xref names `{connector}.{object}`, but `{connector}` has no object `{object}`"
                    )),
                    Some(_) => None,
                };
                if let (Some(msg), Some((file, _))) = (
                    problem,
                    config.connectors.iter().find(|(_, c)| c.id == m.connector),
                ) {
                    errors.push(
                        ConfigError::new(
                            file,
                            format!("objects.{}.fields.{}", m.object, f.source),
                            msg,
                        )
                        .connector(Some(&m.connector)),
                    );
                }
            }
        }
    }

    pub fn get(&self, connector: &str, object: &str) -> Option<&ObjectMapping> {
        self.objects
            .iter()
            .find(|m| m.connector == connector && m.object == object)
    }

    /// Whether some object's cross-system id field names copies in (connector, object).
    pub fn xref_target(&self, connector: &str, object: &str) -> bool {
        self.objects.iter().flat_map(|m| &m.fields).any(|f| {
            matches!(&f.target, Target::Xref { connector: c, object: o } if c == connector && o == object)
        })
    }

    /// Whether some relation field of `connector` names copies in its `object`.
    pub fn ref_target(&self, connector: &str, object: &str) -> bool {
        self.objects
            .iter()
            .filter(|m| m.connector == connector)
            .flat_map(|m| &m.fields)
            .any(|f| f.ref_object.as_deref() == Some(object))
    }

    /// The object of `connector` where `record` would be created: the first that receives
    /// its kind and whose `create_when:` takes it.
    pub fn create_target(&self, record: &revsync_sdk::Record, connector: &str) -> Option<&str> {
        self.outbound(record.kind)
            .find(|m| m.connector == connector && m.creates(record))
            .map(|m| m.object.as_str())
    }

    /// Objects that receive records of `kind` (direction out or both).
    pub fn outbound(&self, kind: Kind) -> impl Iterator<Item = &ObjectMapping> {
        self.objects
            .iter()
            .filter(move |m| m.kind == kind && m.direction != Direction::In)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    Trim,
    Lowercase,
    Uppercase,
}

#[derive(Debug, Clone)]
pub enum Target {
    Field(&'static FieldDef),
    /// `custom.<name>`: passed through unchanged.
    Custom(String),
    /// A person's full name, split into first_name / last_name on the way in.
    FullName,
    /// The value is this record's id in another connector's object: an identity key.
    Xref {
        connector: String,
        object: String,
    },
}

#[derive(Debug, Clone)]
pub struct FieldMap {
    pub source: String,
    pub target: Target,
    pub direction: Direction,
    transforms: Vec<Transform>,
    /// (source value, canonical value); first match wins going out.
    values: Option<Vec<(String, String)>>,
    currency_field: Option<String>,
    currency: Option<String>,
    minor_units: bool,
    fraction: bool,
    /// For relations: the object (in this connector) the id refers to.
    pub ref_object: Option<String>,
    /// Written when the canonical value is empty: a field the system requires.
    default: Option<Json>,
}

#[derive(Debug, Clone)]
pub struct ObjectMapping {
    pub connector: String,
    pub connector_type: String,
    pub object: String,
    pub kind: Kind,
    pub direction: Direction,
    pub fields: Vec<FieldMap>,
    /// The connector's `phone_region`: the country of numbers without a country code.
    pub phone_region: Option<String>,
    /// `quality.fix_name_case`: a person's name read in one case is stored in mixed case.
    pub fix_name_case: bool,
    /// The object's `filter:`: which records sync.
    pub filter: BTreeMap<String, crate::config::Condition>,
    /// The object's `create_when:`: which records revsync creates here (canonical fields).
    pub create_when: BTreeMap<String, crate::config::Condition>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FullSpec {
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    map: Option<MapSpec>,
    #[serde(default)]
    transform: Vec<Transform>,
    #[serde(default)]
    currency_field: Option<String>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    minor_units: bool,
    #[serde(default)]
    fraction: bool,
    #[serde(default, rename = "ref")]
    ref_object: Option<String>,
    #[serde(default)]
    xref: Option<String>,
    #[serde(default)]
    direction: Option<Direction>,
    /// What to write when the record has no value (a field the system requires).
    #[serde(default)]
    default: Option<Json>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MapSpec {
    Named(String),
    Inline(BTreeMap<String, String>),
}

/// What a source record says, in canonical terms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapped {
    pub values: BTreeMap<String, Value>,
    /// (connector, object, external id) naming this same record elsewhere.
    pub xrefs: Vec<(String, String, String)>,
    /// Values that could not be read; the rest of the record goes on.
    pub problems: Vec<String>,
    /// Fields implied rather than stated (a domain read off a website): they identify the
    /// record and fill an empty field, but never replace what another system states.
    pub implied: Vec<String>,
}

impl ObjectMapping {
    /// Whether canonical `field` goes out to this object (it is part of what a push
    /// sends). A copy read back that equals what revsync sent still brings the fields
    /// that do not: the system's own (a Stripe subscription's status) are news.
    pub fn pushes(&self, field: &str) -> bool {
        self.fields
            .iter()
            .filter(|f| f.direction != Direction::In)
            .any(|f| match &f.target {
                Target::Field(def) => def.name == field,
                Target::Custom(name) => field.strip_prefix("custom.") == Some(name.as_str()),
                Target::FullName => field == "first_name" || field == "last_name",
                Target::Xref { .. } => false,
            })
    }

    /// Whether a field of this object holds another system's id (`xref`).
    pub fn has_xrefs(&self) -> bool {
        self.fields
            .iter()
            .any(|f| matches!(f.target, Target::Xref { .. }))
    }

    pub fn compile(
        connector: &str,
        connector_type: &str,
        object: &str,
        kind: Kind,
        direction: Direction,
        fields: &BTreeMap<String, Json>,
        siblings: &[(String, Kind)],
    ) -> Result<Self, Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for (source, spec) in fields {
            let full: FullSpec = match spec {
                Json::String(to) => FullSpec {
                    to: Some(to.clone()),
                    map: None,
                    transform: Vec::new(),
                    currency_field: None,
                    currency: None,
                    minor_units: false,
                    fraction: false,
                    ref_object: None,
                    xref: None,
                    direction: None,
                    default: None,
                },
                Json::Object(_) => match serde_path_to_error::deserialize(spec) {
                    Ok(f) => f,
                    Err(e) => {
                        errors.push((source.clone(), e.into_inner().to_string()));
                        continue;
                    }
                },
                _ => {
                    errors.push((
                        source.clone(),
                        "expected a canonical field name or a mapping like `{ to: stage, map: default }`".into(),
                    ));
                    continue;
                }
            };
            match compile_field(connector_type, object, kind, source, full, siblings) {
                Ok(f) => out.push(f),
                Err(e) => errors.push((source.clone(), e)),
            }
        }
        // Two source fields feeding one canonical field would take turns overwriting it,
        // and writing it back would send the same value to both.
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for f in &out {
            let target = match &f.target {
                Target::Field(def) => def.name.to_owned(),
                Target::Custom(name) => format!("custom.{name}"),
                Target::FullName => "full_name".to_owned(),
                Target::Xref { .. } => continue,
            };
            if let Some(first) = seen.insert(target.clone(), &f.source) {
                errors.push((
                    f.source.clone(),
                    format!("`{first}` already maps to `{target}`: one source field per canonical field in an object (map the other to `custom.<name>`)"),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            connector: connector.to_owned(),
            connector_type: connector_type.to_owned(),
            object: object.to_owned(),
            kind,
            direction,
            fields: out,
            phone_region: None,
            fix_name_case: false,
            filter: BTreeMap::new(),
            create_when: BTreeMap::new(),
        })
    }

    /// Whether a record read from this object is in its `filter:`.
    pub fn admits(&self, fields: &BTreeMap<String, Json>) -> bool {
        self.filter
            .iter()
            .all(|(field, c)| c.holds(lookup(fields, field)))
    }

    /// Whether a projection may be written here: the `filter:` conditions on fields this
    /// mapping writes hold for it (a condition on a field only read cannot be judged
    /// before the system has the record).
    pub fn admits_out(&self, projection: &BTreeMap<String, Json>) -> bool {
        self.filter.iter().all(|(field, c)| {
            let written = self
                .fields
                .iter()
                .any(|f| &f.source == field && f.direction != Direction::In);
            !written || c.holds(projection.get(field))
        })
    }

    /// Whether revsync may create `record` here (its `create_when:` holds).
    pub fn creates(&self, record: &revsync_sdk::Record) -> bool {
        self.create_when.iter().all(|(field, c)| {
            let v = record.value(field).map(revsync_sdk::Value::to_json);
            c.holds(v.as_ref())
        })
    }

    /// Read a source record into canonical values (normalized).
    pub fn map_in(&self, fields: &BTreeMap<String, Json>) -> Mapped {
        let mut m = Mapped::default();
        for f in self.fields.iter().filter(|f| f.direction != Direction::Out) {
            let Some(raw) = lookup(fields, &f.source) else {
                continue;
            };
            match &f.target {
                Target::Xref { connector, object } => {
                    if let Some(id) = json_text(raw).filter(|s| !s.is_empty()) {
                        m.xrefs.push((connector.clone(), object.clone(), id));
                    }
                }
                Target::FullName => {
                    let name = json_text(raw).unwrap_or_default();
                    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
                    let (first, last) = match name.split_once(' ') {
                        Some((a, b)) => (a.to_owned(), b.to_owned()),
                        None => (name.clone(), String::new()),
                    };
                    m.values.insert("first_name".into(), text_or_null(first));
                    m.values.insert("last_name".into(), text_or_null(last));
                }
                Target::Custom(name) => {
                    m.values.insert(format!("custom.{name}"), custom_value(raw));
                }
                Target::Field(def) => match self.read(f, def, raw, fields) {
                    Ok(extra) => {
                        for (k, v) in extra {
                            m.values.insert(k, v);
                        }
                    }
                    Err(e) => m.problems.push(format!("{}: {e}", f.source)),
                },
            }
        }
        self.derive(&mut m.values, &mut m.implied);
        m
    }

    /// Values implied by others: domain from website (when the system has no domain
    /// field, or leaves it empty: HubSpot companies often carry only a website, and the
    /// domain is what identifies them), deal status from stage.
    fn derive(&self, values: &mut BTreeMap<String, Value>, implied: &mut Vec<String>) {
        let mapped = |name: &str| {
            self.fields
                .iter()
                .any(|f| matches!(&f.target, Target::Field(d) if d.name == name))
        };
        let has_domain = values.get("domain").is_some_and(|v| !v.is_empty());
        if self.kind == Kind::Organization && !has_domain {
            if let Some(Value::Text(site)) = values.get("website") {
                if let Some(d) = normalize::domain(site) {
                    values.insert("domain".into(), Value::Text(d));
                    implied.push("domain".into());
                }
            }
        }
        if self.kind == Kind::Deal && !mapped("status") {
            if let Some(Value::Text(stage)) = values.get("stage") {
                let status = valuemaps::deal_status_for_stage(stage);
                values.insert("status".into(), Value::Text(status.into()));
            }
        }
    }

    fn read(
        &self,
        f: &FieldMap,
        def: &FieldDef,
        raw: &Json,
        all: &BTreeMap<String, Json>,
    ) -> Result<Vec<(String, Value)>, String> {
        let name = def.name.to_owned();
        if raw.is_null() {
            return Ok(vec![(name, Value::Null)]);
        }
        let text = || -> Result<String, String> {
            let mut s = json_text(raw).ok_or_else(|| format!("expected text, found {raw}"))?;
            for t in &f.transforms {
                s = match t {
                    Transform::Trim => s.trim().to_owned(),
                    Transform::Lowercase => s.to_lowercase(),
                    Transform::Uppercase => s.to_uppercase(),
                };
            }
            Ok(s)
        };
        let v = match def.ty {
            FieldType::Text
                if self.fix_name_case
                    && self.kind == Kind::Person
                    && matches!(def.name, "first_name" | "last_name") =>
            {
                let t = text()?.trim().to_owned();
                text_or_null(normalize::name_case(&t).unwrap_or(t))
            }
            FieldType::Text | FieldType::Url => text_or_null(text()?.trim().to_owned()),
            FieldType::Email => {
                return Ok(match normalize::email(&text()?) {
                    Some(e) => {
                        let mut out = vec![(name, Value::Text(e.value))];
                        if self.kind == Kind::Person && def.name == "email" {
                            out.push(("email_valid".into(), Value::Bool(e.valid)));
                        }
                        out
                    }
                    None => vec![(name, Value::Null)],
                })
            }
            FieldType::Phone => {
                return Ok(
                    match normalize::phone(&text()?, self.phone_region.as_deref()) {
                        Some(p) => {
                            // The raw form is kept only when it says more than the E.164 one, so
                            // our own normalized write coming back changes nothing.
                            let raw_differs = p.e164.as_deref() != Some(p.raw.as_str());
                            let mut out =
                                vec![(name, Value::Text(p.e164.unwrap_or_else(|| p.raw.clone())))];
                            if self.kind == Kind::Person && def.name == "phone" && raw_differs {
                                out.push(("phone_raw".into(), Value::Text(p.raw)));
                            }
                            out
                        }
                        None => vec![(name, Value::Null)],
                    },
                );
            }
            FieldType::Domain => {
                let t = text()?;
                if t.contains('@') {
                    // A company's domain from an email: never gmail.com and friends.
                    normalize::domain_from_email(&t)
                        .map(Value::Text)
                        .unwrap_or(Value::Null)
                } else {
                    Value::Text(
                        normalize::domain(&t).ok_or_else(|| format!("`{t}` is not a domain"))?,
                    )
                }
            }
            FieldType::Country => {
                let t = text()?;
                match normalize::country(&t) {
                    Some(c) => Value::Text(c.to_owned()),
                    None => text_or_null(t.trim().to_owned()),
                }
            }
            FieldType::Enum(allowed) => {
                let t = text()?;
                let canon = match &f.values {
                    Some(table) => table
                        .iter()
                        .find(|(src, _)| *src == t)
                        .map(|(_, c)| c.clone())
                        .ok_or_else(|| format!("`{t}` is not in the value map"))?,
                    None => t,
                };
                if !allowed.contains(&canon.as_str()) {
                    return Err(format!("`{canon}` is not one of {}", allowed.join(", ")));
                }
                Value::Text(canon)
            }
            FieldType::Int => Value::Int(json_int(raw)?),
            FieldType::Percent => {
                let s = json_text(raw).ok_or("expected a number")?;
                let scale = if f.fraction { 2 } else { 0 };
                let v = parse_decimal(&s, scale)?;
                if !(0..=100).contains(&v) {
                    return Err(format!("{s} is outside 0..=100 percent"));
                }
                Value::Int(v)
            }
            FieldType::Money => {
                let currency = f
                    .currency_field
                    .as_deref()
                    .and_then(|c| lookup(all, c))
                    .and_then(json_text)
                    .filter(|c| !c.is_empty())
                    .or_else(|| f.currency.clone())
                    .ok_or("no currency: set `currency_field` or `currency` in the mapping")?
                    .to_uppercase();
                let amount_minor = if f.minor_units {
                    json_int(raw)?
                } else {
                    let s = json_text(raw).ok_or("expected an amount")?;
                    parse_decimal(&s, currency_exponent(&currency))?
                };
                Value::Money {
                    amount_minor,
                    currency,
                }
            }
            FieldType::Date => Value::Date(parse_date(raw)?),
            FieldType::Time => Value::time(parse_time(raw)?),
            FieldType::Bool => match raw {
                Json::Bool(b) => Value::Bool(*b),
                Json::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
                Json::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
                other => return Err(format!("expected true or false, found {other}")),
            },
            FieldType::Relation(_) => match json_text(raw).filter(|s| !s.is_empty()) {
                Some(id) => Value::ExtRef {
                    connector: self.connector.clone(),
                    object: f.ref_object.clone().unwrap_or_default(),
                    id,
                },
                None => Value::Null,
            },
            FieldType::TextList => {
                let items: Vec<String> = match raw {
                    Json::Array(a) => a.iter().filter_map(json_text).collect(),
                    other => json_text(other).into_iter().collect(),
                };
                let mut items: Vec<String> = if def.name == "domains" {
                    items.iter().filter_map(|d| normalize::domain(d)).collect()
                } else {
                    items
                        .into_iter()
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                };
                items.sort();
                items.dedup();
                Value::List(items.into_iter().map(Value::Text).collect())
            }
            FieldType::Json => Value::Json(raw.to_string()),
        };
        Ok(vec![(name, v)])
    }

    /// The record as this object's source fields: what revsync wants the system to hold.
    /// `value` reads a canonical field (a record's or a change's, neither copied);
    /// `resolve` turns a relation into this connector's id for the related record.
    pub fn project<'v>(
        &self,
        value: &dyn Fn(&str) -> Option<&'v Value>,
        resolve: &mut dyn FnMut(&Value, &str) -> Option<String>,
    ) -> BTreeMap<String, Json> {
        let mut out = BTreeMap::new();
        for f in self.fields.iter().filter(|f| f.direction != Direction::In) {
            let json = match &f.target {
                Target::Xref { .. } => continue,
                Target::FullName => {
                    let part = |n: &str| value(n).and_then(Value::as_text).unwrap_or("").to_owned();
                    let full = format!("{} {}", part("first_name"), part("last_name"))
                        .trim()
                        .to_owned();
                    (!full.is_empty()).then_some(Json::String(full))
                }
                Target::Custom(name) => match value(&format!("custom.{name}")) {
                    Some(v) if !v.is_empty() => Some(custom_json(v)),
                    _ => None,
                },
                Target::Field(def) => value(def.name)
                    .filter(|v| !v.is_empty())
                    .and_then(|v| self.write(f, def, v, resolve, &mut out)),
            };
            if let Some(json) = json.or_else(|| f.default.clone()) {
                out.insert(f.source.clone(), json);
            }
        }
        out
    }

    fn write(
        &self,
        f: &FieldMap,
        def: &FieldDef,
        v: &Value,
        resolve: &mut dyn FnMut(&Value, &str) -> Option<String>,
        out: &mut BTreeMap<String, Json>,
    ) -> Option<Json> {
        Some(match (def.ty, v) {
            (FieldType::Enum(_), Value::Text(canon)) => match &f.values {
                Some(table) => Json::String(table.iter().find(|(_, c)| c == canon)?.0.clone()),
                None => Json::String(canon.clone()),
            },
            (FieldType::Percent, Value::Int(p)) if f.fraction => {
                Json::String(format_decimal(*p, 2))
            }
            (
                FieldType::Money,
                Value::Money {
                    amount_minor,
                    currency,
                },
            ) => {
                if let Some(cf) = &f.currency_field {
                    out.insert(cf.clone(), Json::String(currency.clone()));
                }
                if f.minor_units {
                    Json::from(*amount_minor)
                } else {
                    Json::String(format_decimal(*amount_minor, currency_exponent(currency)))
                }
            }
            (FieldType::Relation(_), v) => Json::String(resolve(v, f.ref_object.as_deref()?)?),
            (_, Value::Text(s)) => Json::String(s.clone()),
            (_, Value::Int(i)) => Json::from(*i),
            (_, Value::Bool(b)) => Json::Bool(*b),
            (_, other) => other.to_json(),
        })
    }
}

fn compile_field(
    connector_type: &str,
    object: &str,
    kind: Kind,
    source: &str,
    spec: FullSpec,
    siblings: &[(String, Kind)],
) -> Result<FieldMap, String> {
    let mut f = FieldMap {
        source: source.to_owned(),
        target: Target::FullName,
        direction: spec.direction.unwrap_or(Direction::Both),
        transforms: spec.transform,
        values: None,
        currency_field: spec.currency_field,
        currency: spec.currency.map(|c| c.to_uppercase()),
        minor_units: spec.minor_units,
        fraction: spec.fraction,
        ref_object: spec.ref_object,
        default: spec.default,
    };
    if f.default
        .as_ref()
        .is_some_and(|d| !(d.is_string() || d.is_number() || d.is_boolean()))
    {
        return Err("`default` must be a text, a number or true/false".into());
    }
    if let Some(x) = spec.xref {
        let (connector, obj) = x
            .split_once('.')
            .ok_or_else(|| format!("xref `{x}` must be `<connector id>.<object>`"))?;
        f.target = Target::Xref {
            connector: connector.into(),
            object: obj.into(),
        };
        f.direction = Direction::In;
        return Ok(f);
    }
    let to = spec
        .to
        .ok_or("missing `to`: the canonical field this maps to")?;
    if let Some(custom) = to.strip_prefix("custom.") {
        if custom.is_empty() {
            return Err("`custom.` needs a name".into());
        }
        f.target = Target::Custom(custom.to_owned());
        return Ok(f);
    }
    if to == "full_name" && kind == Kind::Person {
        return Ok(f);
    }
    let def = kind.field(&to).ok_or_else(|| {
        let names: Vec<&str> = kind.fields().iter().map(|d| d.name).collect();
        let hint = crate::config::nearest(&to, names.iter().copied())
            .map(|n| format!("did you mean `{n}`? "))
            .unwrap_or_default();
        format!(
            "`{to}` is not a field of {kind}; {hint}{kind} fields: {}, or custom.<name>",
            names.join(", ")
        )
    })?;
    f.target = Target::Field(def);
    match (def.ty, spec.map) {
        (FieldType::Enum(allowed), Some(MapSpec::Named(n))) if n == "default" => {
            let table = valuemaps::default_table(connector_type, object, source)
                .ok_or_else(|| format!("no default value map for {connector_type} {object}.{source}; give the table inline"))?;
            f.values = Some(
                table
                    .iter()
                    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                    .collect(),
            );
            check_enum(&f, allowed)?;
        }
        (_, Some(MapSpec::Named(n))) if n != "default" => {
            return Err(format!(
                "unknown value map `{n}`; use `default` or an inline table"
            ))
        }
        (FieldType::Enum(allowed), Some(MapSpec::Inline(t))) => {
            f.values = Some(t.into_iter().collect());
            check_enum(&f, allowed)?;
        }
        (FieldType::Enum(_), None) => {}
        (_, Some(_)) => {
            return Err(format!(
                "`map` applies to enumerated fields; `{to}` is not one"
            ))
        }
        (_, None) => {}
    }
    if def.ty == FieldType::Money && f.currency_field.is_none() && f.currency.is_none() {
        return Err(format!(
            "money field `{to}` needs `currency_field: <source field>` or `currency: USD`"
        ));
    }
    if let FieldType::Relation(target) = def.ty {
        if let Some(r) = &f.ref_object {
            match siblings.iter().find(|(n, _)| n == r) {
                None => {
                    let names: Vec<&str> = siblings.iter().map(|(n, _)| n.as_str()).collect();
                    return Err(format!(
                        "relation `{to}`: `ref: {r}` names no object of this connector (its objects: {})",
                        names.join(", ")
                    ));
                }
                Some((_, k)) if target.is_some_and(|t| t != *k) => {
                    return Err(format!(
                        "relation `{to}` points at a {}, but `{r}` holds {k} records",
                        target.map(|t| t.as_str()).unwrap_or_default()
                    ));
                }
                Some(_) => {}
            }
        }
        if f.ref_object.is_none() {
            let candidates: Vec<&String> = siblings
                .iter()
                .filter(|(_, k)| {
                    target.is_none_or(|t| t == *k)
                        && (target.is_some() || matches!(k, Kind::Person | Kind::Organization))
                })
                .map(|(n, _)| n)
                .collect();
            match candidates.as_slice() {
                [one] => f.ref_object = Some((*one).clone()),
                _ => {
                    return Err(format!(
                        "relation `{to}`: name the object its id refers to with `ref: <object>`"
                    ))
                }
            }
        }
    }
    Ok(f)
}

fn check_enum(f: &FieldMap, allowed: &[&str]) -> Result<(), String> {
    for (src, canon) in f.values.iter().flatten() {
        if !allowed.contains(&canon.as_str()) {
            return Err(format!(
                "value map sends `{src}` to `{canon}`, which is not one of {}",
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

/// A field by exact key, else by dotted path into nested objects (`metadata.crm_id`).
fn lookup<'a>(fields: &'a BTreeMap<String, Json>, path: &str) -> Option<&'a Json> {
    if let Some(v) = fields.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut cur = fields.get(parts.next()?)?;
    for p in parts {
        cur = cur.get(p)?;
    }
    Some(cur)
}

fn json_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn json_int(v: &Json) -> Result<i64, String> {
    match v {
        Json::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("expected a whole number, found {v}"))
}

fn text_or_null(s: String) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::Text(s)
    }
}

fn custom_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::String(s) => text_or_null(s.clone()),
        Json::Number(n) if n.is_i64() => Value::Int(n.as_i64().unwrap_or_default()),
        other => Value::Json(other.to_string()),
    }
}

fn custom_json(v: &Value) -> Json {
    match v {
        Value::Text(s) => Json::String(s.clone()),
        Value::Int(i) => Json::from(*i),
        Value::Bool(b) => Json::Bool(*b),
        other => other.to_json(),
    }
}

/// ISO 4217 minor-unit exponents that differ from 2.
pub fn currency_exponent(code: &str) -> u32 {
    match code {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// An exact decimal string to an integer scaled by 10^scale, rounding half to even.
/// No floats: `"1299.995"` at scale 2 is 130000, exactly.
pub fn parse_decimal(s: &str, scale: u32) -> Result<i64, String> {
    let t = s.trim();
    let bad = || format!("`{s}` is not a decimal number");
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let scale = scale as usize;
    let (kept, dropped) = if frac.len() > scale {
        frac.split_at(scale)
    } else {
        (frac, "")
    };
    let digits = format!("{int}{kept:0<scale$}");
    let mut v: i64 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| bad())?
    };
    if let Some(first) = dropped.bytes().next() {
        let rest_nonzero = dropped.bytes().skip(1).any(|b| b != b'0');
        let round_up = first > b'5' || (first == b'5' && (rest_nonzero || v % 2 == 1));
        if round_up {
            v = v.checked_add(1).ok_or_else(bad)?;
        }
    }
    // `v` is at least 0, so its negation always exists.
    Ok(if neg {
        v.checked_neg().ok_or_else(bad)?
    } else {
        v
    })
}

/// The inverse of [`parse_decimal`]: `format_decimal(129950, 2) == "1299.50"`.
pub fn format_decimal(v: i64, scale: u32) -> String {
    if scale == 0 {
        return v.to_string();
    }
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    // Past 10^19 no u64 reaches a whole unit: all of it is fraction.
    let p = 10u64.checked_pow(scale);
    format!(
        "{sign}{}.{:0width$}",
        p.and_then(|p| a.checked_div(p)).unwrap_or(0),
        p.and_then(|p| a.checked_rem(p)).unwrap_or(a),
        width = scale as usize
    )
}

/// RFC 3339, Salesforce's `+0000` offsets, or epoch seconds / milliseconds.
pub fn parse_time(v: &Json) -> Result<DateTime<Utc>, String> {
    let from_epoch = |n: i64| {
        // Seconds until year 5138; larger numbers are milliseconds. `unsigned_abs`: the
        // number is the API's, and i64::MIN has no `abs`.
        if n.unsigned_abs() < 100_000_000_000 {
            DateTime::from_timestamp(n, 0)
        } else {
            DateTime::from_timestamp_millis(n)
        }
    };
    match v {
        Json::Number(n) => n.as_i64().and_then(from_epoch),
        Json::String(s) => {
            let s = s.trim();
            DateTime::parse_from_rfc3339(s)
                .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
                .map(|t| t.with_timezone(&Utc))
                .ok()
                .or_else(|| s.parse::<i64>().ok().and_then(from_epoch))
                .or_else(|| {
                    NaiveDate::parse_from_str(s, "%Y-%m-%d")
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                        .map(|t| t.and_utc())
                })
        }
        _ => None,
    }
    .ok_or_else(|| format!("`{v}` is not a time"))
}

pub fn parse_date(v: &Json) -> Result<NaiveDate, String> {
    if let Json::String(s) = v {
        if let Ok(d) = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
            return Ok(d);
        }
    }
    parse_time(v)
        .map(|t| t.date_naive())
        .map_err(|_| format!("`{v}` is not a date"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead(fields: Json) -> Result<ObjectMapping, Vec<(String, String)>> {
        let fields: BTreeMap<String, Json> = serde_json::from_value(fields).unwrap();
        ObjectMapping::compile(
            "sf",
            "salesforce",
            "Lead",
            Kind::Person,
            Direction::Both,
            &fields,
            &[("Lead".into(), Kind::Person)],
        )
    }

    #[test]
    fn a_default_is_written_only_where_the_record_has_no_value() {
        let m = lead(serde_json::json!({
            "LastName": {"to": "last_name", "default": "[not provided]"},
            "Email": "email"
        }))
        .unwrap();
        let mut none = |_: &Value, _: &str| None;
        let empty = m.project(&|_| None, &mut none);
        assert_eq!(empty.get("LastName"), Some(&Json::from("[not provided]")));
        assert_eq!(empty.get("Email"), None);
        let named = BTreeMap::from([("last_name".to_owned(), Value::Text("Lovelace".into()))]);
        assert_eq!(
            m.project(&|f| named.get(f), &mut none).get("LastName"),
            Some(&Json::from("Lovelace"))
        );
        assert!(
            lead(serde_json::json!({"LastName": {"to": "last_name", "default": [1]}})).is_err()
        );
    }

    #[test]
    fn two_sources_for_one_canonical_field_are_refused() {
        let errs =
            lead(serde_json::json!({"Email": "email", "Work_Email__c": "email"})).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].1.contains("already maps to `email`"), "{errs:?}");
    }

    #[test]
    fn extreme_epoch_numbers_are_refused_not_a_panic() {
        for n in [i64::MIN, i64::MAX] {
            assert!(parse_time(&Json::from(n)).is_err(), "{n}");
            assert!(parse_time(&Json::from(n.to_string())).is_err(), "{n}");
        }
        assert_eq!(
            parse_time(&Json::from(1_700_000_000_i64))
                .unwrap()
                .timestamp(),
            1_700_000_000
        );
    }

    #[test]
    fn decimals_at_the_edges_of_i64_format_and_parse_without_a_panic() {
        assert_eq!(format_decimal(-129_950, 2), "-1299.50");
        assert_eq!(format_decimal(i64::MIN, 2), "-92233720368547758.08");
        // 10^19 is past i64 and 10^20 past u64: every digit is fraction there.
        assert_eq!(format_decimal(i64::MAX, 19), "0.9223372036854775807");
        assert_eq!(format_decimal(5, 20), "0.00000000000000000005");
        assert_eq!(parse_decimal("-1299.50", 2), Ok(-129_950));
        assert_eq!(
            parse_decimal("-92233720368547758.07", 2),
            Ok(-9_223_372_036_854_775_807)
        );
        assert!(parse_decimal("-92233720368547758.08", 2).is_err());
    }
}
