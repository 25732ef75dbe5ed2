//! Loading and validating the configuration directory.
//!
//! Parse (YAML through the `config` crate, environment overrides), interpolate
//! `${VAR}`s, then validate section by section with no IO, collecting every error
//! before reporting. Each error names the file, the connector and the field.

mod connector;
mod daemon;
mod daemon_file;
mod error;
mod interpolate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub use connector::{
    Condition, ConnectorConfig, DeletePolicy, Direction, ObjectConfig, PollConfig,
};
pub use daemon::{
    AlertsConfig, DaemonConfig, KpiConfig, LogConfig, LogFormat, MergeRuleConfig, PolicyName,
    RetentionConfig, RetryConfig, ServerConfig, SpendConfig, StatusAuth, StoreConfig, StoreKind,
};
pub use daemon_file::load_daemon_only;
pub use error::{nearest, ConfigError, ConfigErrors};

use daemon_file::load_daemon;

use crate::registry::Registry;

/// The daemon file's name inside the configuration directory.
pub const DAEMON_FILE: &str = "revsync.yaml";
/// The folder of connector files inside the configuration directory.
pub const CONNECTORS_DIR: &str = "connectors";
/// Prefix of environment variables that override `revsync.yaml`
/// (`REVSYNC_SERVER__LISTEN=0.0.0.0:8080`, `REVSYNC_LOG__FORMAT=json`).
pub const ENV_PREFIX: &str = "REVSYNC";

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub daemon: DaemonConfig,
    /// Connectors in file-name order, each with the file it came from.
    pub connectors: Vec<(PathBuf, ConnectorConfig)>,
    /// Workflow rules from `workflows/*.yaml`, compiled.
    pub workflows: crate::workflows::Rules,
}

/// Where configuration values come from besides the files: the process environment
/// in production, a fixed map in tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
    fn vars(&self) -> Vec<(String, String)>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn vars(&self) -> Vec<(String, String)> {
        std::env::vars().collect()
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
    fn vars(&self) -> Vec<(String, String)> {
        self.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// Load `dir/revsync.yaml` and `dir/connectors/*.yaml` and validate them all.
pub fn load(dir: &Path, registry: &Registry, env: &dyn Env) -> Result<Config, ConfigErrors> {
    let (config, errors) = load_all(dir, registry, env);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// As [`load`], for `check`: every error of this stage, and the configuration as far as
/// it could be read (defaults where a section failed; a connector whose id, type or
/// objects failed is left out), so that the mapping and merge checks still run on it and
/// one run reports every mistake.
pub fn load_all(dir: &Path, registry: &Registry, env: &dyn Env) -> (Config, Vec<ConfigError>) {
    let mut errors = Vec::new();
    if !dir.is_dir() {
        errors.push(
            ConfigError::new(dir, "", "configuration directory not found")
                .hint("pass the directory holding revsync.yaml and connectors/ with --config DIR"),
        );
        let empty = Config {
            dir: dir.to_path_buf(),
            daemon: DaemonConfig::default(),
            connectors: Vec::new(),
            workflows: crate::workflows::Rules::default(),
        };
        return (empty, errors);
    }

    let daemon = load_daemon(&dir.join(DAEMON_FILE), env, &mut errors);

    let mut connectors: Vec<(PathBuf, ConnectorConfig)> = Vec::new();
    for file in connector_files(&dir.join(CONNECTORS_DIR), &mut errors) {
        if let Some(c) = load_connector(&file, registry, env, &mut errors) {
            if let Some((first, _)) = connectors.iter().find(|(_, o)| o.id == c.id) {
                errors.push(
                    ConfigError::new(&file, "id", format!("duplicate connector id `{}`", c.id))
                        .connector(Some(&c.id))
                        .hint(format!(
                            "`{}` is already used by {}; every connector needs its own id",
                            c.id,
                            first.display()
                        )),
                );
                continue;
            }
            connectors.push((file, c));
        }
    }

    let ids: Vec<String> = connectors.iter().map(|(_, c)| c.id.clone()).collect();
    let workflows = crate::workflows::load(dir, &ids, env, &mut errors);
    let config = Config {
        dir: dir.to_path_buf(),
        daemon: daemon.unwrap_or_default(),
        connectors,
        workflows,
    };
    (config, errors)
}

/// Objects a connector file names itself (a CSV file each) need names that are safe as
/// file names and a mapping of their own; `key:` belongs to them alone.
fn open_objects(
    ctx: &FileCtx<'_>,
    kind: &dyn revsync_sdk::ConnectorType,
    objects: &BTreeMap<String, ObjectConfig>,
    errors: &mut Vec<ConfigError>,
) {
    for (name, o) in objects {
        let path = format!("objects.{name}");
        if !kind.open_objects() {
            if o.key.is_some() {
                errors.push(
                    ctx.error(
                        format!("{path}.key"),
                        format!(
                            "`{}` objects have the system's own ids; `key` is for csv connectors",
                            kind.name()
                        ),
                    )
                    .hint("remove the `key:` line"),
                );
            }
            continue;
        }
        let safe = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !safe {
            errors.push(
                ctx.error(
                    path.clone(),
                    format!("`{name}` is not a plain name: letters, digits, `_`, `-` and `.`, not starting with `.`"),
                )
                .example("objects:\n  people:\n    kind: person"),
            );
        }
        if o.fields.is_empty() {
            errors.push(
                ctx.error(
                    format!("{path}.fields"),
                    format!("a `{}` object has no default mapping: map its fields", kind.name()),
                )
                .example(format!(
                    "objects:\n  {name}:\n    kind: person\n    fields: {{ email: email, first_name: first_name }}"
                )),
            );
        }
        if o.key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            errors.push(
                ctx.error(format!("{path}.key"), "is empty")
                    .example(format!("objects:\n  {name}:\n    key: id")),
            );
        }
    }
}

/// The fields a system refuses a create without must be written by every object that
/// may create a kind there (the first object of that kind revsync writes, and those before
/// it that create only what their `create_when:` takes), or given a `default:`: otherwise
/// every create becomes a dead letter.
fn required_for_create(
    ctx: &FileCtx<'_>,
    kind: &dyn revsync_sdk::ConnectorType,
    objects: &BTreeMap<String, ObjectConfig>,
    errors: &mut Vec<ConfigError>,
) {
    // An object that writes no field is never pushed to, so it creates nothing.
    let writes_a_field = |o: &ObjectConfig| {
        o.fields.values().any(|spec| match spec {
            Value::Object(m) => {
                !m.contains_key("xref") && m.get("direction").and_then(Value::as_str) != Some("in")
            }
            _ => true,
        })
    };
    // Per kind, the objects that may create: in order, each with a `create_when:` and the
    // first without one (it takes every record the ones before it left).
    let mut creating: Vec<(revsync_sdk::Kind, &String)> = Vec::new();
    let mut settled: Vec<revsync_sdk::Kind> = Vec::new();
    for (name, o) in objects
        .iter()
        .filter(|(_, o)| o.direction != Direction::In && writes_a_field(o))
    {
        if settled.contains(&o.kind) {
            continue;
        }
        creating.push((o.kind, name));
        if o.create_when.is_empty() {
            settled.push(o.kind);
        }
    }
    for (name, o) in objects {
        for (field, c) in &o.create_when {
            let known = field.starts_with("custom.") || o.kind.field(field).is_some();
            if !known {
                errors.push(
                    ctx.error(
                        format!("objects.{name}.create_when.{field}"),
                        format!("`{field}` is not a canonical {} field", o.kind),
                    )
                    .hint("create_when tests the canonical record (MODEL.md), e.g. `lifecycle_stage` or `custom.<name>`"),
                );
            }
            if c.is_empty() {
                errors.push(
                    ctx.error(
                        format!("objects.{name}.create_when.{field}"),
                        "a condition needs one of `in`, `not_in`, `equals`, `not_equals`, `exists`",
                    )
                    .example(format!(
                        "objects:\n  {name}:\n    create_when:\n      {field}: {{ in: [subscriber, lead] }}"
                    )),
                );
            }
        }
    }
    for (canonical, name) in creating {
        let Some(o) = objects.get(name) else {
            continue;
        };
        for field in kind.required_for_create(name) {
            let written = match o.fields.get(*field) {
                None => false,
                Some(Value::Object(spec)) => {
                    spec.contains_key("default")
                        || spec.get("direction").and_then(Value::as_str) != Some("in")
                }
                Some(_) => true,
            };
            if !written {
                errors.push(
                    ctx.error(
                        format!("objects.{name}.fields"),
                        format!(
                            "{} refuses to create a record in `{name}` without `{field}`, and revsync creates {canonical} records there",
                            kind.name()
                        ),
                    )
                    .hint(format!(
                        "map `{field}` to a canonical field, or give it a value for records that have none: `{field}: {{ to: <field>, default: <value> }}`"
                    )),
                );
            }
        }
    }
}

fn connector_files(dir: &Path, errors: &mut Vec<ConfigError>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            errors.push(ConfigError::new(
                dir,
                "",
                format!("cannot read directory: {e}"),
            ));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    files
}

/// Per-file context: turns serde failures into errors that name file, connector and field.
struct FileCtx<'a> {
    file: &'a Path,
    connector: Option<String>,
    /// Values substituted from the environment, redacted from every message.
    secrets: Vec<String>,
    /// Top-level sections with an unresolved `${VAR}`: not validated further, so
    /// one missing variable does not cascade into unrelated-looking errors.
    unresolved: Vec<String>,
}

impl<'a> FileCtx<'a> {
    fn new(file: &'a Path, connector: Option<String>) -> Self {
        Self {
            file,
            connector,
            secrets: Vec::new(),
            unresolved: Vec::new(),
        }
    }

    fn error(&self, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.file, field, message)
            .connector(self.connector.as_deref())
            .redact(&self.secrets)
    }

    /// Deserialize one section; on failure record an error with the full field path.
    fn parse<T: DeserializeOwned>(
        &self,
        section: &str,
        value: &Value,
        errors: &mut Vec<ConfigError>,
    ) -> Option<T> {
        if self.unresolved.iter().any(|s| s == section) {
            return None;
        }
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let sub = e.path().to_string();
                let path = if sub == "." {
                    section.to_owned()
                } else {
                    format!("{section}.{sub}")
                };
                let message = e.into_inner().to_string();
                let mut err = self.error(path.clone(), message.clone());
                if let Some(h) = error::unknown_field_hint(&message) {
                    err = err.hint(h);
                } else if let Some(h) = unit_hint(&path, &message) {
                    err = err.hint(h);
                }
                errors.push(err);
                None
            }
        }
    }

    /// An optional section: its default when absent, `None` (error recorded) when invalid.
    fn section<T: DeserializeOwned>(
        &self,
        map: &Map<String, Value>,
        key: &str,
        default: impl FnOnce() -> T,
        errors: &mut Vec<ConfigError>,
    ) -> Option<T> {
        match map.get(key) {
            Some(v) => self.parse(key, v, errors),
            None => Some(default()),
        }
    }

    fn check_top_level(
        &self,
        map: &Map<String, Value>,
        valid: &[&str],
        errors: &mut Vec<ConfigError>,
    ) {
        for key in map.keys().filter(|k| !valid.contains(&k.as_str())) {
            let hint = match nearest(key, valid.iter().copied()) {
                Some(n) => format!("did you mean `{n}`?"),
                None => format!("valid keys here: {}", valid.join(", ")),
            };
            errors.push(
                self.error(key.clone(), format!("unknown key `{key}`"))
                    .hint(hint),
            );
        }
    }
}

/// Durations and sizes are plain numbers in the unit their key names; say so when
/// someone writes `10m` or `1s`.
fn unit_hint(path: &str, message: &str) -> Option<String> {
    if !message.starts_with("invalid type") {
        return None;
    }
    let key = path.rsplit('.').next().unwrap_or(path);
    let unit = [
        ("_secs", "seconds"),
        ("_ms", "milliseconds"),
        ("_pct", "percent"),
        ("_bytes", "bytes"),
        ("_mb", "MiB"),
    ]
    .iter()
    .find(|(suffix, _)| key.ends_with(suffix))?
    .1;
    Some(format!(
        "`{key}` is a whole number of {unit}, e.g. `{key}: 60`"
    ))
}

/// A file as written, `${VAR}`s left as they are: what `discover --yaml` copies into the
/// file it writes, so no secret is ever printed.
/// One value with its `${VAR}`s resolved from `env` (the rules of the configuration
/// files), for a value given on the command line.
pub fn interpolate_value(value: &str, env: &dyn Env) -> Result<String, String> {
    let mut v = Value::String(value.to_owned());
    let (_, failed) = interpolate::interpolate(&mut v, &|n| env.var(n));
    if let Some(f) = failed.into_iter().next() {
        return Err(f.message);
    }
    Ok(v.as_str().unwrap_or_default().to_owned())
}

pub fn read_uninterpolated(file: &Path) -> Result<Map<String, Value>, ConfigErrors> {
    let mut errors = Vec::new();
    read_yaml(file, None, &mut errors).ok_or(ConfigErrors(errors))
}

/// Read a YAML file into a JSON value through the `config` crate, layering `extra`
/// sources (environment overrides) on top.
/// A YAML file as JSON with `${VAR}`s filled in (a workflow file); `None` with the
/// error recorded when it cannot be read, parsed or filled.
pub(crate) fn read_yaml_json(
    file: &Path,
    env: &dyn Env,
    errors: &mut Vec<ConfigError>,
) -> Option<Value> {
    let mut map = read_yaml(file, None, errors)?;
    let mut ctx = FileCtx::new(file, None);
    let before = errors.len();
    resolve(&mut ctx, &mut map, env, errors);
    (errors.len() == before).then_some(Value::Object(map))
}

fn read_yaml(
    file: &Path,
    env_overrides: Option<config::Environment>,
    errors: &mut Vec<ConfigError>,
) -> Option<Map<String, Value>> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            errors.push(ConfigError::new(file, "", format!("cannot read file: {e}")));
            return None;
        }
    };
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Yaml));
    if let Some(env) = env_overrides {
        builder = builder.add_source(env);
    }
    let parsed = builder.build().and_then(|c| c.try_deserialize::<Value>());
    match parsed {
        Ok(Value::Object(map)) => Some(map),
        Ok(Value::Null) => Some(Map::new()),
        Ok(other) => {
            errors.push(ConfigError::new(
                file,
                "",
                format!(
                    "expected a mapping of keys at the top level, found {}",
                    kind_of(&other)
                ),
            ));
            None
        }
        Err(e) => {
            errors.push(
                ConfigError::new(file, "", format!("invalid YAML: {e}"))
                    .hint("check indentation and that every `[` and `{` is closed"),
            );
            None
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Interpolate `${VAR}`s in a parsed file, recording failures as errors.
fn resolve(
    ctx: &mut FileCtx<'_>,
    map: &mut Map<String, Value>,
    env: &dyn Env,
    errors: &mut Vec<ConfigError>,
) {
    let mut value = Value::Object(std::mem::take(map));
    let (used, failed) = interpolate::interpolate(&mut value, &|n| env.var(n));
    ctx.secrets = used;
    for f in failed {
        let section = f.path.split('.').next().unwrap_or_default().to_owned();
        errors.push(ctx.error(f.path, f.message).hint(
            "set the variable in the daemon's environment (systemd EnvironmentFile, Kubernetes Secret)",
        ));
        ctx.unresolved.push(section);
    }
    if let Value::Object(m) = value {
        *map = m;
    }
}

fn load_connector(
    file: &Path,
    registry: &Registry,
    env: &dyn Env,
    errors: &mut Vec<ConfigError>,
) -> Option<ConnectorConfig> {
    let mut map = read_yaml(file, None, errors)?;
    let mut ctx = FileCtx::new(file, None);
    let before = errors.len();
    resolve(&mut ctx, &mut map, env, errors);

    // The id first, so every later error can name the connector.
    let id = match map.get("id") {
        None => {
            errors.push(ctx.error("id", "missing").example("id: hubspot-main"));
            None
        }
        Some(v) => ctx.parse::<String>("id", v, errors).and_then(|id| {
            let ok = !id.is_empty()
                && id.len() <= 64
                && id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if id == crate::console::SOURCE {
                errors.push(
                    ctx.error("id", format!("`{id}` is reserved: edits made in the console carry it as their source"))
                        .example("id: hubspot-main"),
                );
                None
            } else if ok {
                Some(id)
            } else {
                errors.push(
                    ctx.error("id", format!("`{id}` is not a valid connector id"))
                        .hint("use 1 to 64 lowercase letters, digits, `-` or `_`; it appears in URLs and metrics")
                        .example("id: hubspot-main"),
                );
                None
            }
        }),
    };
    ctx.connector = id.clone();
    // Errors recorded before the id was known (interpolation) get it now.
    for e in errors.iter_mut().skip(before) {
        if e.connector.is_none() {
            e.connector = ctx.connector.clone();
        }
    }
    ctx.check_top_level(&map, connector::TOP_LEVEL_KEYS, errors);

    let version = match map.get("version") {
        None => {
            errors.push(ctx.error("version", "missing").example("version: 1"));
            None
        }
        Some(v) => ctx.parse::<u32>("version", v, errors).and_then(|v| {
            if v == 1 {
                Some(v)
            } else {
                errors.push(
                    ctx.error("version", format!("unsupported version {v}"))
                        .hint("this revsync reads version 1")
                        .example("version: 1"),
                );
                None
            }
        }),
    };

    let kind = match map.get("type") {
        None => {
            errors.push(
                ctx.error("type", "missing")
                    .hint(format!("known types: {}", registry.names().join(", "))),
            );
            None
        }
        Some(v) => ctx
            .parse::<String>("type", v, errors)
            .and_then(|t| match registry.get(&t) {
                Some(k) => Some(k),
                None => {
                    let known = registry.names();
                    let hint = match nearest(&t, known.iter().copied()) {
                        Some(n) => format!("did you mean `{n}`? known types: {}", known.join(", ")),
                        None => format!("known types: {}", known.join(", ")),
                    };
                    errors.push(
                        ctx.error("type", format!("unknown connector type `{t}`"))
                            .hint(hint),
                    );
                    None
                }
            }),
    };

    let enabled = ctx.section(&map, "enabled", || true, errors);
    let dry_run = ctx.section(&map, "dry_run", || false, errors);
    let poll = ctx.section(&map, "poll", PollConfig::default, errors);
    if let Some(p) = &poll {
        if !connector::INTERVAL_SECS_RANGE.contains(&p.interval_secs) {
            errors.push(
                ctx.error(
                    "poll.interval_secs",
                    format!("{} is outside 1..=86400 seconds", p.interval_secs),
                )
                .example("poll:\n  interval_secs: 60"),
            );
        }
        if p.jitter_pct > 50 {
            errors.push(
                ctx.error(
                    "poll.jitter_pct",
                    format!("{} is more than 50 percent", p.jitter_pct),
                )
                .example("poll:\n  jitter_pct: 10"),
            );
        }
    }

    let deletes = ctx.section(&map, "deletes", DeletePolicy::default, errors);
    let phone_region = match ctx.section(&map, "phone_region", || None::<String>, errors) {
        Some(Some(raw)) => match crate::engine::normalize::phone_region(&raw) {
            Some(code) => Some(Some(code.to_owned())),
            None => {
                errors.push(
                    ctx.error(
                        "phone_region",
                        format!("`{raw}` is not a country phone numbers can be read for"),
                    )
                    .hint("an ISO 3166 country code or name")
                    .example("phone_region: US"),
                );
                None
            }
        },
        other => other,
    };
    let rate_limit = ctx.section(
        &map,
        "rate_limit",
        revsync_sdk::http::RateLimitConfig::default,
        errors,
    );
    if let Some(r) = &rate_limit {
        if r.requests == Some(0) || r.per_secs == Some(0) {
            errors.push(
                ctx.error("rate_limit", "requests and per_secs must be at least 1")
                    .example("rate_limit:\n  requests: 100\n  per_secs: 10"),
            );
        }
        // A window longer than a day is no rate limit, and its Duration would overflow
        // the limiter's clock arithmetic.
        if let Some(s) = r
            .per_secs
            .filter(|s| *s > connector::RATE_LIMIT_MAX_PER_SECS)
        {
            errors.push(
                ctx.error(
                    "rate_limit.per_secs",
                    format!(
                        "{s} is outside 1..={} seconds",
                        connector::RATE_LIMIT_MAX_PER_SECS
                    ),
                )
                .example("rate_limit:\n  requests: 100\n  per_secs: 10"),
            );
        }
    }
    let http = ctx.section(&map, "http", revsync_sdk::http::HttpConfig::default, errors);
    if http
        .as_ref()
        .is_some_and(|h| h.max_response_bytes().is_err())
    {
        errors.push(
            ctx.error("http.max_response_bytes", "must be at least 1, got 0")
                .example("http:\n  max_response_bytes: 67108864"),
        );
    }
    if let Some(n) = http
        .as_ref()
        .and_then(|h| h.max_response_bytes)
        .filter(|n| *n > connector::MAX_RESPONSE_BYTES_CAP)
    {
        errors.push(
            ctx.error(
                "http.max_response_bytes",
                format!(
                    "{n} is outside 1..={} bytes",
                    connector::MAX_RESPONSE_BYTES_CAP
                ),
            )
            .example("http:\n  max_response_bytes: 67108864"),
        );
    }
    // Object by object, so one bad object does not hide the others from the later checks.
    let objects: Option<BTreeMap<String, ObjectConfig>> = match map.get("objects") {
        None => Some(BTreeMap::new()),
        Some(Value::Object(each)) => Some(
            each.iter()
                .filter_map(|(name, v)| {
                    ctx.parse::<ObjectConfig>(&format!("objects.{name}"), v, errors)
                        .map(|o| (name.clone(), o))
                })
                .collect(),
        ),
        Some(other) => ctx.parse("objects", other, errors),
    };
    if let (Some(objects), Some(kind)) = (&objects, kind) {
        open_objects(&ctx, kind, objects, errors);
    }
    if let (Some(objects), Some(kind)) = (&objects, kind.filter(|k| !k.open_objects())) {
        let valid: Vec<&str> = kind.objects().iter().map(|(n, _)| *n).collect();
        for name in objects.keys().filter(|n| !valid.contains(&n.as_str())) {
            let hint = match nearest(name, valid.iter().copied()) {
                Some(n) => format!(
                    "did you mean `{n}`? {} objects: {}",
                    kind.name(),
                    valid.join(", ")
                ),
                None => format!("{} objects: {}", kind.name(), valid.join(", ")),
            };
            errors.push(
                ctx.error(
                    format!("objects.{name}"),
                    format!("unknown {} object `{name}`", kind.name()),
                )
                .hint(hint),
            );
        }
    }

    if let (Some(objects), Some(kind)) = (&objects, kind) {
        required_for_create(&ctx, kind, objects, errors);
    }
    for (name, o) in objects.iter().flatten() {
        for (field, _) in o.filter.iter().filter(|(_, c)| c.is_empty()) {
            errors.push(
                ctx.error(
                    format!("objects.{name}.filter.{field}"),
                    "a condition needs one of `in`, `not_in`, `equals`, `not_equals`, `exists`",
                )
                .example(format!(
                    "objects:\n  {name}:\n    filter:\n      {field}: {{ in: [customer, opportunity] }}"
                )),
            );
        }
    }

    let params = map
        .get("params")
        .cloned()
        .unwrap_or(Value::Object(Map::new()));
    if let Some(kind) = kind {
        if !ctx.unresolved.iter().any(|s| s == "params") {
            let params_ok = kind.validate_params(&params);
            for (name, o) in objects.iter().flatten() {
                for pe in kind.validate_object(&params, name, &o.decl()) {
                    let field = match pe.path.as_str() {
                        "" => format!("objects.{name}"),
                        sub => format!("objects.{name}.{sub}"),
                    };
                    let mut err = ctx.error(field, pe.message);
                    if let Some(example) = pe.example {
                        err = err.example(example);
                    }
                    errors.push(err);
                }
            }
            if let Err(param_errors) = params_ok {
                for pe in param_errors {
                    let field = if pe.path.is_empty() {
                        "params".to_owned()
                    } else {
                        format!("params.{}", pe.path)
                    };
                    let mut err = ctx.error(field, pe.message.clone());
                    if let Some(h) = error::unknown_field_hint(&pe.message) {
                        err = err.hint(h);
                    }
                    err = err.example(
                        pe.example
                            .unwrap_or_else(|| kind.params_example().to_owned()),
                    );
                    errors.push(err);
                }
            }
        }
    }

    // With errors, the connector still goes on to the mapping checks as far as it was
    // read (its id, type and objects are what they need); `load` refuses it anyway.
    Some(ConnectorConfig {
        version: version.unwrap_or(1),
        id: id?,
        type_name: kind?.name().to_owned(),
        enabled: enabled.unwrap_or(true),
        poll: poll.unwrap_or_default(),
        objects: objects?,
        deletes: deletes.unwrap_or_default(),
        phone_region: phone_region.unwrap_or_default(),
        rate_limit: rate_limit.unwrap_or_default(),
        http: http.unwrap_or_default(),
        params,
        dry_run: dry_run.unwrap_or(false),
    })
}
