//! The deployment files stay valid: the overrides the Dockerfile and the systemd unit set,
//! and the Kubernetes ConfigMap's revsync.yaml, all pass `revsync check`.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn check(dir: &Path, env: &[(String, String)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_revsync"));
    cmd.args(["check", "--config"]).arg(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// `REVSYNC_*` assignments in a Dockerfile `ENV` block or systemd `Environment=` lines.
fn overrides(text: &str) -> Vec<(String, String)> {
    text.split(|c: char| c.is_whitespace() || c == '\\')
        .map(|w| w.trim_start_matches("Environment="))
        .filter(|w| {
            w.starts_with("REVSYNC_") && w.contains('=') && !w.starts_with("REVSYNC_CONFIG_DIR")
        })
        .filter_map(|w| w.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

#[test]
fn the_container_overrides_are_valid_settings() {
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let env = overrides(&dockerfile);
    assert!(env.len() >= 3, "{env:?}");
    let out = check(&root().join("config/local"), &env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("listen 0.0.0.0:8080"), "{stdout}");
    assert!(stdout.contains("/var/lib/revsync/data"), "{stdout}");
}

#[test]
fn the_systemd_overrides_are_valid_settings() {
    let unit = std::fs::read_to_string(root().join("deploy/systemd/revsync.service")).unwrap();
    assert!(unit.contains("ExecStartPre=/usr/local/bin/revsync check --config /etc/revsync"));
    assert!(unit.contains("ExecStart=/usr/local/bin/revsync run --config /etc/revsync"));
    let env = overrides(&unit);
    assert_eq!(env.len(), 2, "{env:?}");
    let out = check(&root().join("config/local"), &env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The ConfigMap's revsync.yaml of a Kubernetes manifest, in a directory of its own.
fn configmap(file: &str) -> tempfile::TempDir {
    let manifest = std::fs::read_to_string(root().join(file)).unwrap();
    let start = manifest
        .find("revsync.yaml: |\n")
        .expect("ConfigMap holds revsync.yaml")
        + "revsync.yaml: |\n".len();
    let end = manifest[start..].find("\n---").map(|i| start + i).unwrap();
    let yaml: String = manifest[start..end]
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("revsync.yaml"), yaml).unwrap();
    dir
}

#[test]
fn the_kubernetes_configmap_passes_check() {
    let dir = configmap("deploy/k8s/revsync.yaml");
    let out = check(dir.path(), &[("REVSYNC_ADMIN_TOKEN".into(), "t".into())]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen 0.0.0.0:8080"));
}

/// The PostgreSQL deployments: the Kubernetes ConfigMap passes `check` with the database
/// URL from the Secret (and never prints its password); three replicas, readiness and a
/// disruption budget; every replica migrates first. The compose file runs three replicas
/// after a one-off migrate.
#[test]
fn the_postgres_deployments_run_three_replicas_on_a_migrated_store() {
    let dir = configmap("deploy/k8s/revsync-postgres.yaml");
    let env = [
        ("REVSYNC_ADMIN_TOKEN".to_owned(), "t".to_owned()),
        (
            "DATABASE_URL".to_owned(),
            "postgres://revsync:pw-not-shown@db:5432/revsync".to_owned(),
        ),
    ];
    let out = check(dir.path(), &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("postgres://db:5432/revsync"), "{stdout}");
    assert!(!stdout.contains("pw-not-shown"), "{stdout}");
    let k8s = std::fs::read_to_string(root().join("deploy/k8s/revsync-postgres.yaml")).unwrap();
    for needle in [
        "kind: Deployment",
        "replicas: 3",
        "readinessProbe:",
        "path: /readyz",
        "kind: PodDisruptionBudget",
        "args: [\"migrate\", \"--config\", \"/etc/revsync\"]",
    ] {
        assert!(k8s.contains(needle), "{needle}");
    }
    let compose =
        std::fs::read_to_string(root().join("deploy/docker-compose.postgres.yml")).unwrap();
    for needle in [
        "image: postgres:16",
        "command: [\"migrate\", \"--config\", \"/etc/revsync\"]",
        "service_completed_successfully",
        "revsync-3:",
        "REVSYNC_STORE__KIND: postgres",
    ] {
        assert!(compose.contains(needle), "{needle}");
    }
}

#[test]
fn the_container_ships_every_connector_and_no_simulator() {
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let build = dockerfile
        .split("RUN ")
        .find(|r| r.starts_with("cargo build"))
        .expect("a cargo build step")
        .replace("\\\n", " ");
    let build = build.lines().next().unwrap();
    assert!(build.contains("--release"), "{build}");
    assert!(build.contains("--no-default-features"), "{build}");
    let features: Vec<&str> = build
        .split("--features")
        .nth(1)
        .expect("--features")
        .split_whitespace()
        .next()
        .unwrap()
        .split(',')
        .collect();
    // Every default feature but the simulators.
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let defaults = manifest
        .lines()
        .find_map(|l| l.strip_prefix("default = "))
        .unwrap();
    for f in defaults.trim_matches(['[', ']']).split(',') {
        let f = f.trim().trim_matches('"');
        assert_eq!(features.contains(&f), f != "demo", "{f} in {features:?}");
    }
}
