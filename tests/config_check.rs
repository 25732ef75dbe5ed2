//! `revsync check` against the shipped configuration and deliberately broken fixtures.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::{Command, Output};

const SECRETS: &[(&str, &str)] = &[
    ("HUBSPOT_TOKEN", "pat-na1-test-token-1111"),
    ("HUBSPOT_CLIENT_SECRET", "hs-client-secret-2222"),
    ("SALESFORCE_CLIENT_ID", "sf-client-id"),
    ("SALESFORCE_CLIENT_SECRET", "sf-client-secret-3333"),
    ("SALESFORCE_REFRESH_TOKEN", "sf-refresh-4444"),
    ("STRIPE_SECRET_KEY", "sk_test_5555"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_6666"),
    ("ZENDESK_API_TOKEN", "zd-token-7777"),
    ("ZENDESK_WEBHOOK_SECRET", "zd-webhook-8888"),
];

fn revsync(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_revsync"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, _) in SECRETS {
        cmd.env_remove(k);
    }
    cmd.env_remove("REVSYNC_TEST_UNSET_STRIPE_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run revsync")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn shipped_config_checks_once_its_secrets_are_set() {
    let out = revsync(&["check", "--config", "config"], SECRETS);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
    let ok_lines: Vec<_> = stdout.lines().filter(|l| l.starts_with("ok ")).collect();
    assert_eq!(ok_lines.len(), 4, "{stdout}");
    assert!(stdout.contains("ok hubspot-main (hubspot) enabled: companies->organization (both, 4 fields), contacts->person (both, 7 fields), deals->deal (both, 6 fields); poll every 60s; deletes archive"), "{stdout}");
    for (_, secret) in SECRETS {
        assert!(
            !stdout.contains(secret),
            "secret {secret} printed: {stdout}"
        );
    }
}

#[test]
fn shipped_config_without_secrets_names_each_missing_variable() {
    let out = revsync(&["check", "--config", "config"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    for (var, _) in SECRETS {
        assert!(
            stderr.contains(&format!("environment variable `{var}` is not set")),
            "{var}: {stderr}"
        );
    }
    assert!(
        stderr.contains(
            "config/connectors/stripe.yaml: connector `stripe-main`: field `params.secret_key`"
        ),
        "{stderr}"
    );
    assert!(
        stderr.trim_end().ends_with("9 configuration errors"),
        "{stderr}"
    );
}

#[test]
fn local_config_needs_no_secrets() {
    let out = revsync(&["check", "--config", "config/local"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("no connectors configured"));
}

#[test]
fn broken_fixtures_report_every_error_with_file_connector_and_field() {
    let out = revsync(&["check", "--config", "tests/fixtures/broken"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    let f = "tests/fixtures/broken";
    let expected = [
        // unknown key, with the nearest valid one
        format!("error: {f}/revsync.yaml: field `server.lisen_backlog`: unknown field `lisen_backlog`, expected one of `listen`, `admin_token`, `read_only_token`, `status_auth`, `allowed_hosts`, `max_body_bytes`, `header_read_timeout_secs`, `idle_timeout_secs`, `max_connections`, `public_url`\n    hint: did you mean `listen`?"),
        // a bad duration in the daemon file does not hide behind the first error
        format!("error: {f}/revsync.yaml: field `shutdown_timeout_secs`: 0 is outside 1..=3600 seconds\n    example: shutdown_timeout_secs: 30"),
        // a webhook id memory shorter than the vendors' retries
        format!("error: {f}/revsync.yaml: field `retention.webhook_seen_ttl_secs`: 3600 is outside 345600..=31536000 seconds (4 to 365 days): shorter than a vendor's retry window lets a redelivered event apply twice\n    example: retention:"),
        // bad YAML syntax, with its position
        format!("error: {f}/connectors/a_bad_yaml.yaml: invalid YAML: while parsing a flow sequence, expected ',' or ']' at byte 81 line 5 column 1"),
        format!("error: {f}/connectors/b_unknown_key.yaml: connector `typo-key`: field `poll.intervl_secs`: unknown field `intervl_secs`, expected `interval_secs` or `jitter_pct`\n    hint: did you mean `interval_secs`?"),
        format!("error: {f}/connectors/c_unknown_type.yaml: connector `typo-type`: field `type`: unknown connector type `hubsopt`\n    hint: did you mean `hubspot`? known types: csv, hubspot, rest, salesforce, stripe, zendesk"),
        format!("error: {f}/connectors/d_missing_env.yaml: connector `needs-env`: field `params.secret_key`: environment variable `REVSYNC_TEST_UNSET_STRIPE_KEY` is not set"),
        format!("error: {f}/connectors/f_dup_second.yaml: connector `twin`: field `id`: duplicate connector id `twin`\n    hint: `twin` is already used by {f}/connectors/e_dup_first.yaml; every connector needs its own id"),
        format!("error: {f}/connectors/g_bad_duration.yaml: connector `bad-duration`: field `poll.interval_secs`: invalid type: string \"10m\", expected u64\n    hint: `interval_secs` is a whole number of seconds, e.g. `interval_secs: 60`"),
        format!("error: {f}/connectors/h_zero_interval.yaml: connector `zero-interval`: field `poll.interval_secs`: 0 is outside 1..=86400 seconds"),
        format!("error: {f}/connectors/h_zero_interval.yaml: connector `zero-interval`: field `objects.contact`: unknown hubspot object `contact`\n    hint: did you mean `contacts`? hubspot objects: contacts, companies, deals"),
        format!("error: {f}/connectors/i_bad_phone_region.yaml: connector `bad-region`: field `phone_region`: `Atlantis` is not a country phone numbers can be read for\n    hint: an ISO 3166 country code or name\n    example: phone_region: US"),
    ];
    for e in &expected {
        assert!(
            stderr.contains(e.as_str()),
            "missing:\n{e}\n--- in ---\n{stderr}"
        );
    }
    assert!(
        stderr.trim_end().ends_with("12 configuration errors"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout when invalid");
}

#[test]
fn a_zero_or_misspelt_response_body_cap_is_refused() {
    let out = revsync(&["check", "--config", "tests/fixtures/http_cap"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    let f = "tests/fixtures/http_cap";
    for e in [
        format!("error: {f}/connectors/typo.yaml: connector `typo-cap`: field `http.max_body`: unknown field `max_body`, expected `max_response_bytes`"),
        format!("error: {f}/connectors/zero_cap.yaml: connector `zero-cap`: field `http.max_response_bytes`: must be at least 1, got 0\n    example: http:\n               max_response_bytes: 67108864"),
    ] {
        assert!(stderr.contains(e.as_str()), "missing:\n{e}\n--- in ---\n{stderr}");
    }
}

#[test]
fn clock_and_size_params_beyond_their_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("connectors");
    std::fs::create_dir(&c).unwrap();
    let huge = i64::MAX;
    for (file, body) in [
        ("hs.yaml", format!("version: 1\nid: hs\ntype: hubspot\nrate_limit:\n  per_secs: 86401\nhttp:\n  max_response_bytes: {huge}\nparams:\n  token: t\n  search_overlap_secs: {huge}\n")),
        ("sf.yaml", format!("version: 1\nid: sf\ntype: salesforce\nparams:\n  auth:\n    flow: client_credentials\n    token_url: https://login.salesforce.com/services/oauth2/token\n    client_id: i\n    client_secret: s\n  overlap_secs: {huge}\n")),
        ("st.yaml", "version: 1\nid: st\ntype: stripe\nparams:\n  secret_key: sk_test_1\n  webhook_tolerance_secs: 4294967295\n".to_owned()),
        ("zd.yaml", format!("version: 1\nid: zd\ntype: zendesk\npoll:\n  interval_secs: {huge}\nparams:\n  subdomain: acme\n  auth:\n    method: oauth\n    access_token: x\n  job_timeout_secs: {huge}\n")),
    ] {
        std::fs::write(c.join(file), body).unwrap();
    }
    let d = dir.path().display().to_string();
    let out = revsync(&["check", "--config", &d], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    let f = format!("{d}/connectors");
    for e in [
        format!("error: {f}/hs.yaml: connector `hs`: field `rate_limit.per_secs`: 86401 is outside 1..=86400 seconds"),
        format!("error: {f}/hs.yaml: connector `hs`: field `http.max_response_bytes`: {huge} is outside 1..=1073741824 bytes"),
        format!("error: {f}/hs.yaml: connector `hs`: field `params.search_overlap_secs`: {huge} is outside 0..=86400 seconds\n    example: search_overlap_secs: 30"),
        format!("error: {f}/sf.yaml: connector `sf`: field `params.overlap_secs`: {huge} is outside 0..=86400 seconds"),
        format!("error: {f}/st.yaml: connector `st`: field `params.webhook_tolerance_secs`: 4294967295 is outside 0..=86400 seconds"),
        format!("error: {f}/zd.yaml: connector `zd`: field `poll.interval_secs`: {huge} is outside 1..=86400 seconds"),
        format!("error: {f}/zd.yaml: connector `zd`: field `params.job_timeout_secs`: {huge} is outside 1..=86400 seconds"),
    ] {
        assert!(stderr.contains(&e), "missing:\n{e}\nin:\n{stderr}");
    }
}

#[test]
fn a_secret_in_the_wrong_field_is_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("connectors")).unwrap();
    std::fs::write(
        dir.path().join("connectors/hs.yaml"),
        "version: 1\nid: hs\ntype: hubspot\nparams:\n  token: ${HUBSPOT_TOKEN}\n  tier: ${HUBSPOT_TOKEN}\n",
    )
    .unwrap();
    let out = revsync(
        &["check", "--config", dir.path().to_str().unwrap()],
        &[("HUBSPOT_TOKEN", "pat-na1-leak-me")],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("field `params.tier`: unknown variant `***`"),
        "{stderr}"
    );
    assert!(!stderr.contains("leak-me"), "{stderr}");
}

#[test]
fn environment_overrides_the_daemon_file() {
    let out = revsync(
        &["check", "--config", "config/local"],
        &[
            ("REVSYNC_SERVER__LISTEN", "127.0.0.1:9999"),
            ("REVSYNC_LOG__FORMAT", "json"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("listen 127.0.0.1:9999"), "{stdout}");
    assert!(stdout.contains("log json"), "{stdout}");

    let out = revsync(
        &["check", "--config", "config/local"],
        &[("REVSYNC_LOG__FORMAT", "xml")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("field `log.format`: unknown variant `xml`, expected `text` or `json`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_missing_config_directory_is_named() {
    let out = revsync(&["check", "--config", "no/such/dir"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no/such/dir: configuration directory not found"));
    assert!(!Path::new("no").exists());
}

#[test]
fn every_subcommand_has_help_and_version_prints() {
    for args in [&["--help"][..], &["run", "--help"], &["check", "--help"]] {
        let out = revsync(args, &[]);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(
            text(&out.stdout).contains("--config") || args == ["--help"],
            "{args:?}"
        );
    }
    let out = revsync(&["--version"], &[]);
    assert_eq!(
        text(&out.stdout).trim(),
        format!("revsync {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn retry_limits_are_checked() {
    let out = revsync(
        &["check", "--config", "config/local"],
        &[
            ("REVSYNC_RETRY__MAX_ATTEMPTS", "0"),
            ("REVSYNC_RETRY__MIN_DELAY_MS", "90000"),
            ("REVSYNC_RETRY__MAX_DELAY_SECS", "60"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("field `retry.max_attempts`: 0 is outside 1..=1000"),
        "{stderr}"
    );
    assert!(
        stderr.contains("field `retry`: min_delay_ms 90000 and max_delay_secs 60 must be positive, the first no longer than the second"),
        "{stderr}"
    );
    let out = revsync(
        &["check", "--config", "config/local"],
        &[("REVSYNC_RETRY__MAX_ATTEMPTS", "25")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn kpi_inputs_out_of_bounds_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("connectors")).unwrap();
    std::fs::write(
        dir.path().join("revsync.yaml"),
        format!(
            "version: 1\nstore:\n  path: {}\nkpi:\n  gross_margin: 80\n  spend:\n    - {{ from: 2026-03-01, to: 2026-03-01, amount_minor: -5, currency: US }}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = revsync(&["check", "--config", dir.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    for want in [
        "field `kpi.gross_margin`: 80 is not a fraction in (0, 1]",
        "field `kpi.spend[0]`: from 2026-03-01 is not before to 2026-03-01",
        "field `kpi.spend[0].amount_minor`: -5 is negative",
        "field `kpi.spend[0].currency`: `US` is not an ISO 4217 code",
    ] {
        assert!(stderr.contains(want), "no `{want}` in:\n{stderr}");
    }
}

#[test]
fn zero_and_out_of_range_limits_are_refused_before_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("revsync.yaml"),
        "version: 1\nserver:\n  admin_token: ''\n  max_body_bytes: 0\n  header_read_timeout_secs: 0\n  idle_timeout_secs: 0\n  max_connections: 0\n  allowed_hosts: ['http://x:80']\n  public_url: not-a-url\nstore:\n  cache_mb: 0\n",
    )
    .unwrap();
    let d = dir.path().display().to_string();
    let out = revsync(&["check", "--config", &d], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    let f = format!("{d}/revsync.yaml");
    for e in [
        format!("error: {f}: field `store.cache_mb`: 0 is outside 8..=1048576 MiB\n    example: store:\n               cache_mb: 256"),
        format!("error: {f}: field `server.max_body_bytes`: 0 is outside 1..=1073741824 bytes"),
        format!("error: {f}: field `server.header_read_timeout_secs`: 0 is outside 1..=300 seconds"),
        format!("error: {f}: field `server.idle_timeout_secs`: 0 is outside 1..=3600 seconds"),
        format!("error: {f}: field `server.max_connections`: 0 is outside 1..=65536 connections"),
        format!("error: {f}: field `server.admin_token`: is empty or contains whitespace"),
        format!("error: {f}: field `server.allowed_hosts`: `http://x:80` is not a host name (no scheme, port or path)"),
        format!("error: {f}: field `server.public_url`: `not-a-url` is not an http(s) URL with a host"),
    ] {
        assert!(stderr.contains(&e), "missing:\n{e}\nin:\n{stderr}");
    }
}

/// A section that does not parse (here `log.format: Text`, a Rust name) stands at its
/// default while every other section is still parsed and range-checked: one run names the
/// type error and every bound, including the merge rules checked after loading.
#[test]
fn a_section_that_does_not_parse_hides_no_other_sections_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("revsync.yaml"),
        "version: 1\nlog:\n  format: Text\nserver:\n  max_body_bytes: 0\n  admin_token: ''\nstore:\n  path: ''\n  cache_mb: 0\nretry:\n  max_attempts: 0\nmerge:\n  person.email: { priority: [] }\nshutdown_timeout_secs: forever\n",
    )
    .unwrap();
    let d = dir.path().display().to_string();
    let out = revsync(&["check", "--config", &d], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    for (field, what) in [
        ("log.format", "unknown variant `Text`"),
        ("shutdown_timeout_secs", "invalid type"),
        ("server.max_body_bytes", "0 is outside"),
        ("server.admin_token", "is empty"),
        ("store.path", "is empty"),
        ("store.cache_mb", "0 is outside"),
        ("retry.max_attempts", "0 is outside 1..=1000"),
        ("merge.person.email", "`priority: []` names no connector"),
    ] {
        assert!(
            errors
                .iter()
                .any(|l| l.contains(&format!("field `{field}`")) && l.contains(what)),
            "missing {field} ({what}) in:\n{stderr}"
        );
    }
    assert_eq!(errors.len(), 8, "{stderr}");
}

/// Issue 26: a configuration with a mistake at every stage (bounds, types, object names,
/// params, mappings, references, required fields, merge rules) is reported whole in one
/// run, each mistake naming its file, connector and field.
#[test]
fn twelve_mistakes_across_every_stage_are_reported_in_one_run() {
    let out = revsync(&["check", "--config", "tests/fixtures/twelve"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    let expected = [
        ("revsync.yaml", "server.max_body_bytes", "0 is outside"),
        ("revsync.yaml", "server.admin_token", "is empty"),
        ("revsync.yaml", "store.path", "is empty"),
        ("revsync.yaml", "store.cache_mb", "0 is outside"),
        (
            "revsync.yaml",
            "merge.person.email",
            "`priority: []` names no connector",
        ),
        (
            "revsync.yaml",
            "merge.person.shoe_size",
            "not a person field",
        ),
        ("hubspot.yaml", "params.tier", "platinum"),
        (
            "hubspot.yaml",
            "objects.contacts.fields.work_email",
            "`email` already maps to `email`",
        ),
        (
            "hubspot.yaml",
            "objects.contacts.fields.associatedcompanyid",
            "`ref: firms` names no object",
        ),
        ("hubspot.yaml", "objects.companies.kind", "organisation"),
        (
            "salesforce.yaml",
            "objects.Lead.fields",
            "without `LastName`",
        ),
        (
            "salesforce.yaml",
            "objects.Account.fields.Parent_CRM_Id__c",
            "connector `hubspot-crm`, which is not configured",
        ),
    ];
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    for (file, field, what) in expected {
        assert!(
            errors.iter().any(|l| l.contains(file)
                && l.contains(&format!("field `{field}`"))
                && l.contains(what)),
            "missing {file} {field} ({what}) in:\n{stderr}"
        );
    }
    assert_eq!(errors.len(), 12, "{stderr}");
    assert!(stderr.contains("12 configuration errors"), "{stderr}");
}

/// Every key the configuration accepts is documented (issue 26): `check` names the keys
/// each section takes when it meets an unknown one, and each must appear, as `key`, in
/// docs/configuration.md; a connector's `params` keys in its own `### params: <type>`
/// section. Every type's params are covered, the REST connector's nested requests too.
#[test]
fn every_accepted_config_key_is_documented() {
    let out = revsync(&["check", "--config", "tests/fixtures/every_key"], &[]);
    let stderr = text(&out.stderr);
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    // `### params: <type>` up to the next heading.
    let params_section = |ty: &str| -> &str {
        let head = format!("### params: {ty}\n");
        let start = docs
            .find(&head)
            .unwrap_or_else(|| panic!("docs/configuration.md has no `{}`", head.trim()));
        let rest = &docs[start + head.len()..];
        &rest[..rest.find("\n#").unwrap_or(rest.len())]
    };
    let mut sections = 0;
    let mut params_of = std::collections::BTreeSet::new();
    let mut missing = Vec::new();
    let mut scope: &str = &docs;
    for line in stderr.lines() {
        if line.starts_with("error:") {
            // The fixtures name each connector `<type>-...keys`.
            let params_type = line
                .contains("field `params")
                .then(|| line.split("connector `").nth(1))
                .flatten()
                .and_then(|rest| rest.split('-').next());
            scope = match params_type {
                Some(ty) => {
                    params_of.insert(ty.to_owned());
                    params_section(ty)
                }
                None => &docs,
            };
            continue;
        }
        let Some(keys) = line.trim().strip_prefix("hint: valid keys here: ") else {
            continue;
        };
        sections += 1;
        for key in keys.split(", ") {
            // As itself, a dotted path's last, first or middle part (`server.listen`,
            // `poll.interval_secs`, `objects.<name>.list.path`), or a YAML key in an example.
            let documented = [
                format!("`{key}`"),
                format!(".{key}`"),
                format!("`{key}."),
                format!(".{key}."),
                format!("{key}:"),
            ]
            .iter()
            .any(|form| scope.contains(form.as_str()));
            if !documented {
                missing.push(key.to_owned());
            }
        }
    }
    // Daemon: top level, server, store, log, retention, retry, alerts, a merge rule;
    // connector: top level, poll, http, rate_limit, an object; params of every type, and
    // the REST connector's auth, objects, list, paging, incremental, get, create, webhook.
    assert!(
        sections >= 30,
        "only {sections} sections listed their keys:\n{stderr}"
    );
    let types: Vec<&str> = params_of.iter().map(String::as_str).collect();
    assert_eq!(
        types,
        ["csv", "hubspot", "rest", "salesforce", "stripe", "zendesk"],
        "params checked"
    );
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "accepted but not in docs/configuration.md: {missing:?}"
    );
}

/// `config/examples/webinar.yaml`, the declarative REST connector, checks as shipped; a
/// mistake in its declaration is named down to the field.
#[test]
fn the_webinar_rest_example_checks_and_a_broken_one_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("connectors")).unwrap();
    std::fs::write(
        dir.path().join("revsync.yaml"),
        format!(
            "version: 1\nstore:\n  path: {}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/webinar.yaml"),
    )
    .unwrap();
    let file = dir.path().join("connectors/webinar.yaml");
    std::fs::write(&file, &example).unwrap();
    let env = [
        ("WEBINAR_URL", "http://127.0.0.1:9"),
        ("WEBINAR_TOKEN", "tok-1234567890"),
        ("WEBINAR_WEBHOOK_SECRET", "whsec-1234567890"),
    ];
    let conf = dir.path().to_str().unwrap();
    let out = revsync(&["check", "--config", conf], &env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    for (_, secret) in &env[1..] {
        assert!(!text(&out.stdout).contains(secret), "a secret printed");
    }

    let broken = example
        .replace("from: $.next_cursor", "from: \"$.[next\"")
        .replace("method: PATCH", "method: DELETE")
        .replace("object: registrants", "object: registrant");
    std::fs::write(&file, broken).unwrap();
    let out = revsync(&["check", "--config", conf], &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let err = text(&out.stderr) + &text(&out.stdout);
    for field in [
        "params.objects.registrants.list.paging.from",
        "params.objects.registrants.update.method",
        "params.webhook.object",
    ] {
        assert!(
            err.contains(&format!("connector `webinar`: field `{field}`")),
            "{field} in:\n{err}"
        );
    }
    assert!(err.contains("webinar.yaml"), "{err}");
}
