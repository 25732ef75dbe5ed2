//! Configuration loading through `revsync::config::load`, the daemon's own loader, on a
//! directory written from the input: `revsync.yaml`, NUL, one connector file, NUL, then
//! `NAME=value` lines as the environment (`${VAR}` interpolation, `REVSYNC_*` overrides).
#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use revsync::config;
use revsync::registry::Registry;

/// One directory per process, rewritten by every input.
static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("revsync-fuzz-config-{}", std::process::id()));
    std::fs::create_dir_all(dir.join(config::CONNECTORS_DIR))
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
});

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let daemon = parts.next().unwrap_or_default();
    let connector = parts.next();
    let env: BTreeMap<String, String> = parts
        .next()
        .map(String::from_utf8_lossy)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let dir = &*DIR;
    let write = |path: PathBuf, bytes: &[u8]| {
        std::fs::write(&path, bytes)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()))
    };
    write(dir.join(config::DAEMON_FILE), daemon);
    let file = dir.join(config::CONNECTORS_DIR).join("fuzz.yaml");
    match connector {
        Some(bytes) => write(file, bytes),
        None => {
            let _ = std::fs::remove_file(file);
        }
    }
    let _ = config::load(dir, &Registry::builtin(), &env);
});
