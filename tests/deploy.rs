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

#[test]
fn the_kubernetes_configmap_passes_check() {
    let manifest = std::fs::read_to_string(root().join("deploy/k8s/revsync.yaml")).unwrap();
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
    let out = check(dir.path(), &[("REVSYNC_ADMIN_TOKEN".into(), "t".into())]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen 0.0.0.0:8080"));
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
