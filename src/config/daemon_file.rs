//! `revsync.yaml`: read whole for the daemon and `check`, or only its `server` for a
//! client command.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::daemon::{self, DaemonConfig, RetentionConfig, RetryConfig, ServerConfig, StoreConfig};
use super::{read_yaml, resolve, ConfigError, ConfigErrors, Env, FileCtx, DAEMON_FILE, ENV_PREFIX};

/// Only `dir/revsync.yaml` (and its environment overrides): what a client command needs
/// to find the daemon. `server.*` must be valid, its `${VAR}`s set; `store.path` (where
/// the daemon keeps a token it generated) is read when it can be, else the default, since
/// `--token` can stand in. The other sections, connector files and the secrets they name
/// are not read: a client needs no alert webhook or connector secret.
pub fn load_daemon_only(dir: &Path, env: &dyn Env) -> Result<DaemonConfig, ConfigErrors> {
    let file = dir.join(DAEMON_FILE);
    let mut errors = Vec::new();
    let Some(mut map) = read_daemon_file(&file, env, &mut errors) else {
        return Err(ConfigErrors(errors));
    };
    // Interpolated apart, each section in a map of its own, so a variable missing in
    // `store` is not an error and `server`'s secrets stay redacted in its messages.
    let mut part = |key: &str, errors: &mut Vec<ConfigError>| {
        let mut m: Map<String, Value> = map.remove_entry(key).into_iter().collect();
        let mut ctx = FileCtx::new(&file, None);
        resolve(&mut ctx, &mut m, env, errors);
        (ctx, m)
    };
    let (server_ctx, server_map) = part("server", &mut errors);
    let server = server_ctx.section(&server_map, "server", ServerConfig::default, &mut errors);
    let mut lenient = Vec::new();
    let (store_ctx, store_map) = part("store", &mut lenient);
    let store = store_ctx.section(&store_map, "store", StoreConfig::default, &mut lenient);
    let cfg = DaemonConfig {
        server: server.unwrap_or_default(),
        store: store.unwrap_or_default(),
        ..DaemonConfig::default()
    };
    for b in cfg.out_of_bounds() {
        if b.field.starts_with("server.") {
            errors.push(server_ctx.error(b.field, b.message).example(b.example));
        }
    }
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The daemon file, interpolated and validated. Every section is parsed on its own and a
/// failed one stands at its default, so the range checks of every other section (and the
/// merge rules, checked later against the connectors) still run: one `check` shows every
/// mistake. `None` only when the file cannot be read as YAML at all.
pub(super) fn load_daemon(
    file: &Path,
    env: &dyn Env,
    errors: &mut Vec<ConfigError>,
) -> Option<DaemonConfig> {
    let mut map = read_daemon_file(file, env, errors)?;
    let mut ctx = FileCtx::new(file, None);
    resolve(&mut ctx, &mut map, env, errors);
    ctx.check_top_level(&map, daemon::TOP_LEVEL_KEYS, errors);
    let d = DaemonConfig::default();
    let cfg = DaemonConfig {
        version: ctx
            .section(&map, "version", || d.version, errors)
            .unwrap_or(d.version),
        server: ctx
            .section(&map, "server", ServerConfig::default, errors)
            .unwrap_or_default(),
        store: ctx
            .section(&map, "store", StoreConfig::default, errors)
            .unwrap_or_default(),
        log: ctx
            .section(&map, "log", Default::default, errors)
            .unwrap_or_default(),
        shutdown_timeout_secs: ctx
            .section(
                &map,
                "shutdown_timeout_secs",
                || d.shutdown_timeout_secs,
                errors,
            )
            .unwrap_or(d.shutdown_timeout_secs),
        merge: ctx
            .section(&map, "merge", BTreeMap::new, errors)
            .unwrap_or_default(),
        retention: ctx
            .section(&map, "retention", RetentionConfig::default, errors)
            .unwrap_or_default(),
        retry: ctx
            .section(&map, "retry", RetryConfig::default, errors)
            .unwrap_or_default(),
        alerts: ctx
            .section(&map, "alerts", daemon::AlertsConfig::default, errors)
            .unwrap_or_default(),
        kpi: ctx
            .section(&map, "kpi", daemon::KpiConfig::default, errors)
            .unwrap_or_default(),
        identity: ctx
            .section(&map, "identity", daemon::IdentityConfig::default, errors)
            .unwrap_or_default(),
        quality: ctx
            .section(&map, "quality", daemon::QualityConfig::default, errors)
            .unwrap_or_default(),
    };
    // A section that failed holds its defaults, which pass these: only what was written
    // is judged.
    check_ranges(&ctx, &cfg, errors);
    Some(cfg)
}

/// The file with its environment overrides (`REVSYNC_SERVER__LISTEN`), not interpolated.
fn read_daemon_file(
    file: &Path,
    env: &dyn Env,
    errors: &mut Vec<ConfigError>,
) -> Option<Map<String, Value>> {
    // Only variables naming a top-level key are overrides; the rest (REVSYNC_ADMIN_TOKEN
    // referenced as ${...}) are values for interpolation.
    let overrides: config::Map<String, String> = env
        .vars()
        .into_iter()
        .filter(|(k, _)| {
            k.strip_prefix(ENV_PREFIX)
                .and_then(|r| r.strip_prefix('_'))
                .map(|r| {
                    let first = r
                        .split("__")
                        .next()
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    daemon::TOP_LEVEL_KEYS.contains(&first.as_str())
                })
                .unwrap_or(false)
        })
        .collect();
    let env_source = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .source(Some(overrides));

    if file.exists() {
        return read_yaml(file, Some(env_source), errors);
    }
    // No file: defaults plus environment overrides.
    let built = config::Config::builder()
        .add_source(env_source)
        .build()
        .and_then(|c| c.try_deserialize::<Value>());
    match built {
        Ok(Value::Object(m)) => Some(m),
        _ => Some(Map::new()),
    }
}

/// Lower and upper bounds, and values no section's types can rule out.
fn check_ranges(ctx: &FileCtx<'_>, cfg: &DaemonConfig, errors: &mut Vec<ConfigError>) {
    let secs = cfg.shutdown_timeout_secs;
    if secs == 0 || secs > 3600 {
        errors.push(
            ctx.error(
                "shutdown_timeout_secs",
                format!("{secs} is outside 1..=3600 seconds"),
            )
            .example("shutdown_timeout_secs: 30"),
        );
    }
    for (field, message, example) in cfg.retention.problems() {
        errors.push(
            ctx.error(format!("retention.{field}"), message)
                .example(example),
        );
    }
    for (field, message, example) in cfg.kpi.problems() {
        errors.push(ctx.error(format!("kpi.{field}"), message).example(example));
    }
    let a = &cfg.alerts;
    if !(1..=3600).contains(&a.check_interval_secs) {
        errors.push(
            ctx.error(
                "alerts.check_interval_secs",
                format!("{} is outside 1..=3600 seconds", a.check_interval_secs),
            )
            .example("alerts:\n  check_interval_secs: 30"),
        );
    }
    let url = a.webhook_url.as_ref().map(|u| u.expose().to_owned());
    if url
        .is_some_and(|u| !url::Url::parse(&u).is_ok_and(|p| matches!(p.scheme(), "http" | "https")))
    {
        errors.push(
            ctx.error("alerts.webhook_url", "is not an http(s) URL")
                .example("alerts:\n  webhook_url: ${SLACK_WEBHOOK_URL}"),
        );
    }
    let r = &cfg.retry;
    if !daemon::RETRY_MAX_ATTEMPTS_RANGE.contains(&r.max_attempts) {
        errors.push(
            ctx.error(
                "retry.max_attempts",
                format!("{} is outside 1..=1000", r.max_attempts),
            )
            .example("retry:\n  max_attempts: 10"),
        );
    }
    if r.min_delay_ms == 0
        || r.max_delay_secs == 0
        || r.min_delay_ms > r.max_delay_secs.saturating_mul(1000)
    {
        errors.push(
            ctx.error(
                "retry",
                format!(
                    "min_delay_ms {} and max_delay_secs {} must be positive, the first no longer than the second",
                    r.min_delay_ms, r.max_delay_secs
                ),
            )
            .example("retry:\n  min_delay_ms: 1000\n  max_delay_secs: 600"),
        );
    }
    if cfg.version != 1 {
        errors.push(
            ctx.error("version", format!("unsupported version {}", cfg.version))
                .hint("this revsync reads version 1")
                .example("version: 1"),
        );
    }
    for b in cfg.out_of_bounds() {
        errors.push(ctx.error(b.field, b.message).example(b.example));
    }
    if cfg.store.flush_interval_ms == 0 {
        errors.push(
            ctx.error("store.flush_interval_ms", "must be at least 1 millisecond")
                .example("store:\n  flush_interval_ms: 500"),
        );
    }
    if let Err(e) = cfg.log.level.parse::<tracing_subscriber::EnvFilter>() {
        errors.push(
            ctx.error(
                "log.level",
                format!("`{}` is not a log filter: {e}", cfg.log.level),
            )
            .example("log:\n  level: info"),
        );
    }
}
