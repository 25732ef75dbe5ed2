//! Workflows: rules in `DIR/workflows/*.yaml` that run on the engine's applied-change
//! events and act by handing changes back to the engine (DESIGN.md, ADR 0049).
//!
//! The engine knows no rule: it writes an event per changed record in the same batch as
//! the change, and takes a consumer's acts together with the events they consume.

pub mod eval;
pub mod rules;
pub mod runner;
pub mod webhook;

use std::path::{Path, PathBuf};

pub use rules::{Rule, Rules};
pub use runner::{DryRun, Run, RunStatus, Runner};

use crate::config::{ConfigError, Env};

pub const DIR: &str = "workflows";

/// Every rule under `dir/workflows/`, in file and rule order; errors are appended.
/// `connectors`: the configured connector ids (`route:` names them).
pub fn load(
    dir: &Path,
    connectors: &[String],
    env: &dyn Env,
    errors: &mut Vec<ConfigError>,
) -> Rules {
    let mut out = Vec::new();
    for file in files(&dir.join(DIR), errors) {
        let Some(doc) = crate::config::read_yaml_json(&file, env, errors) else {
            continue;
        };
        for rule in rules::compile_file(&file, &doc, connectors, errors) {
            if let Some(first) = out.iter().find(|r: &&Rule| r.name == rule.name) {
                let mut e = ConfigError::new(
                    &file,
                    "name",
                    format!("duplicate rule name `{}`", rule.name),
                )
                .hint(format!(
                    "`{}` is already a rule in {}",
                    rule.name,
                    first.file.display()
                ));
                e.rule = Some(rule.name.clone());
                errors.push(e);
                continue;
            }
            out.push(rule);
        }
    }
    Rules(out)
}

fn files(dir: &Path, errors: &mut Vec<ConfigError>) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                })
                .collect();
            files.sort();
            files
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            errors.push(ConfigError::new(
                dir,
                "",
                format!("cannot read directory: {e}"),
            ));
            Vec::new()
        }
    }
}

/// `workflows list` / `GET /admin/workflows`: each rule, its trigger and actions, and
/// what it did since the daemon started (counts from a running runner only).
pub fn list_json(rules: &Rules, runner: Option<&Runner>) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = rules
        .0
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "file": r.file.display().to_string(),
                "description": r.description,
                "trigger": r.trigger.describe(),
                "after_secs": r.after.map(|d| d.as_secs()),
                "when": r.when,
                "actions": r.actions.iter().map(rules::Action::name).collect::<Vec<_>>(),
                "max_depth": r.max_depth,
                "max_runs_per_minute": r.max_runs_per_minute,
                "counts": runner.map(|x| x.stats(&r.name)),
            })
        })
        .collect();
    serde_json::json!({ "rules": rules })
}
