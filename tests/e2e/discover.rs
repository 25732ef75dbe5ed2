//! `revsync discover` (issue 26): against each simulator it lists the objects and fields the
//! API describes, custom ones included, beside the mapping's canonical field; the file
//! `--yaml` writes passes `revsync check` and maps what the original mapped.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::{Rig, BIN};
use crate::ONE_AT_A_TIME;

fn revsync(rig: &Rig, config: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .env("REVSYNC_LOG__LEVEL", "warn");
    for (k, v) in rig.sims.env() {
        cmd.env(k, v);
    }
    cmd.output().expect("run revsync")
}

/// The field `name` of `object` in a `discover --json` answer.
fn field<'a>(d: &'a Value, object: &str, name: &str) -> &'a Value {
    let o = d["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == object)
        .unwrap_or_else(|| panic!("no object {object} in {d}"));
    o["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no field {object}.{name} in {o}"))
}

fn custom_fields(d: &Value) -> Vec<String> {
    d["objects"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|o| {
            o["fields"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["custom"] == true)
                .map(move |f| format!("{}.{}", o["name"].as_str().unwrap(), f["name"]))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_describes_each_system_and_its_yaml_passes_check() {
    let _one = ONE_AT_A_TIME.lock().await;
    let rig = Rig::new().await;
    let config = rig.config_dir();
    // Stripe has no schema API: its custom fields are the metadata keys records carry.
    let customer = rig
        .sims
        .stripe
        .ids("customers")
        .pop()
        .expect("a seeded customer");
    rig.sims.stripe.update_customer(
        &customer,
        serde_json::json!({"metadata": {"account_tier": "gold"}}),
    );

    // What each system must say, one field each that a mapping depends on:
    // (connector, object, field, mapped canonical field).
    let expected = [
        ("hubspot", "contacts", "email", "email"),
        ("salesforce", "Lead", "LastName", "last_name"),
        ("zendesk", "users", "email", "email"),
        ("stripe", "customers", "email", "domain"), // customers are companies in the demo
    ];
    for (id, object, name, canonical) in expected {
        let out = revsync(&rig, &config, &["discover", id, "--json"]);
        assert!(
            out.status.success(),
            "discover {id} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let d: Value = serde_json::from_slice(&out.stdout).expect("discover --json is JSON");
        assert_eq!(d["connector"], id);
        let f = field(&d, object, name);
        assert_eq!(f["maps_to"], canonical, "{id} {object}.{name}: {f}");
        assert!(
            !custom_fields(&d).is_empty(),
            "{id}: the simulator's account has custom fields, discover shows none: {d}"
        );

        // The table names the same fields.
        let out = revsync(&rig, &config, &["discover", id, "--object", object]);
        assert!(out.status.success());
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(table.contains(name) && table.contains(canonical), "{table}");
    }

    // Salesforce marks what a Lead create needs; the check of required fields uses it.
    let out = revsync(
        &rig,
        &config,
        &["discover", "salesforce", "--json", "--object", "Lead"],
    );
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(field(&d, "Lead", "Company")["required"], true, "{d}");
    assert_eq!(field(&d, "Lead", "Email")["required"], false, "{d}");

    // --yaml writes a file that passes check in place of the original, maps what the
    // original mapped, never prints a secret, and lists unmapped fields commented out.
    for id in ["hubspot", "salesforce", "zendesk", "stripe"] {
        let out = revsync(&rig, &config, &["discover", id, "--yaml"]);
        assert!(
            out.status.success(),
            "discover {id} --yaml failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let yaml = String::from_utf8(out.stdout).unwrap();
        for (_, secret) in rig.sims.env() {
            assert!(
                secret.len() < 12 || !yaml.contains(&secret),
                "{id}: the file carries a secret's value:\n{yaml}"
            );
        }
        assert!(
            yaml.lines()
                .any(|l| l.trim_start().starts_with("# ") && l.contains("custom.")),
            "{id}: no unmapped field offered:\n{yaml}"
        );
        let copy = tempfile::tempdir().unwrap();
        let dir = copy.path();
        std::fs::create_dir_all(dir.join("connectors")).unwrap();
        std::fs::copy(config.join("revsync.yaml"), dir.join("revsync.yaml")).unwrap();
        for other in ["hubspot", "salesforce", "zendesk", "stripe"] {
            let file = dir.join(format!("connectors/{other}.yaml"));
            if other == id {
                std::fs::write(&file, &yaml).unwrap();
            } else {
                std::fs::copy(config.join(format!("connectors/{other}.yaml")), &file).unwrap();
            }
        }
        let check = revsync(&rig, dir, &["check"]);
        assert!(
            check.status.success(),
            "check refused what discover {id} --yaml wrote:\n{}\n{yaml}",
            String::from_utf8_lossy(&check.stderr)
        );
        let summary = |out: &Output| -> String {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find(|l| l.starts_with(&format!("ok {id} ")))
                .map(|l| l.split(" [").next().unwrap_or(l).to_owned())
                .unwrap_or_default()
        };
        let original = revsync(&rig, &config, &["check"]);
        assert_eq!(
            summary(&check),
            summary(&original),
            "{id}: the written file maps other objects or fields than the original"
        );
    }

    // An object the system does not have: a clear error naming the ones it has.
    let out = revsync(
        &rig,
        &config,
        &["discover", "hubspot", "--object", "nosuch"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nosuch") && err.contains("contacts"), "{err}");
    let out = revsync(&rig, &config, &["discover", "nosuch-connector"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("configured: hubspot"));
}
