//! The real binary's lifecycle: start on an ephemeral port, serve the operator
//! endpoints, shut down in order on SIGTERM.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

const TOKEN: &str = "zd-oauth-do-not-print";

/// revsync.yaml for a daemon on an ephemeral port with JSON logs, plus `extra` lines.
fn write_daemon(dir: &Path, extra: &str) {
    std::fs::create_dir_all(dir.join("connectors")).unwrap();
    std::fs::write(
        dir.join("revsync.yaml"),
        format!(
            "version: 1\nserver:\n  listen: 127.0.0.1:0\nstore:\n  path: {}\nlog:\n  format: json\n  level: info\n{extra}",
            dir.join("data").display()
        ),
    )
    .unwrap();
}

fn write_config(dir: &Path) {
    write_daemon(dir, "shutdown_timeout_secs: 5\n");
    std::fs::write(
        dir.join("connectors/zendesk.yaml"),
        "version: 1\nid: zendesk-test\ntype: zendesk\nparams:\n  base_url: http://127.0.0.1:9\n  auth:\n    method: oauth\n    access_token: ${ZD_TOKEN}\nobjects:\n  users:\n    kind: person\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("connectors/stripe.yaml"),
        "version: 1\nid: stripe-off\ntype: stripe\nenabled: false\nparams:\n  secret_key: sk_test_x\n",
    )
    .unwrap();
}

type Log = tokio::task::JoinHandle<Vec<String>>;

/// A CLI run exited 0; its stderr shows when not.
fn succeeded(out: &std::process::Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Start the daemon and read its address from the JSON log line announcing it.
async fn start(dir: &Path) -> (Child, String, Log) {
    start_with(dir, &[]).await
}

/// As [`start`], with extra arguments to `revsync run`.
async fn start_with(dir: &Path, extra: &[&str]) -> (Child, String, Log) {
    start_until(dir, extra, "http server listening").await
}

/// `revsync run` on `dir`, its log (stderr) and stdout piped, its secret set.
fn run(dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_revsync"));
    cmd.args(["run", "--config"])
        .arg(dir)
        .args(extra)
        .env("ZD_TOKEN", TOKEN)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// As [`start_with`], returning once the log has also said `message`.
async fn start_until(dir: &Path, extra: &[&str], message: &str) -> (Child, String, Log) {
    let mut child = run(dir, extra)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn revsync");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut all = Vec::new();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        let mut addr = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            all.push(line);
            if v["message"] == "http server listening" {
                addr = Some(v["addr"].as_str().unwrap().to_owned());
            }
            if let (Some(addr), true) = (&addr, v["message"] == message) {
                return addr.clone();
            }
        }
        panic!("daemon exited before logging `{message}`");
    })
    .await
    .expect("daemon did not announce its address");
    // Keep draining the log so the child never blocks on a full pipe.
    let rest = tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            all.push(l);
        }
        all
    });
    (child, format!("http://{addr}"), rest)
}

#[tokio::test]
async fn serves_operator_endpoints_and_stops_in_order_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let (mut child, base, log) = start(dir.path()).await;
    let http = reqwest::Client::new();

    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Ready once the store is open and every enabled connector has started.
    let mut ready = false;
    for _ in 0..100 {
        let r = http.get(format!("{base}/readyz")).send().await.unwrap();
        if r.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "readyz never became 200");

    let r = http.get(format!("{base}/status")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(!body.contains(TOKEN), "secret on /status: {body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["store"]["backend"], "sled");
    assert_eq!(status["ready"], true);
    let connectors = status["connectors"].as_array().unwrap();
    assert_eq!(connectors.len(), 2);
    assert_eq!(connectors[0]["id"], "stripe-off");
    assert_eq!(connectors[0]["state"], "disabled");
    assert_eq!(connectors[1]["id"], "zendesk-test");
    // It runs (its API is a closed loopback port, so it may already be backing off).
    let state = connectors[1]["state"].as_str().unwrap();
    assert!(
        ["running", "idle", "backing_off"].contains(&state),
        "{state}"
    );
    assert_eq!(connectors[1]["objects"], serde_json::json!(["users"]));
    assert_eq!(connectors[1]["dead_letters"], 0);

    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let metrics = r.text().await.unwrap();
    assert!(metrics.contains("revsync_ready 1"), "{metrics}");
    assert!(
        metrics.contains(r#"revsync_connector_state{connector="zendesk-test",state="starting"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"revsync_http_requests_total{route="/healthz",method="GET",status="200"} 1"#
        ),
        "{metrics}"
    );

    let r = http.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "not_found");

    // SIGTERM: readiness drops (or the port closes), then a clean exit within the deadline.
    sigterm(&child);
    let mut saw_not_ready = false;
    for _ in 0..200 {
        match http.get(format!("{base}/readyz")).send().await {
            Ok(r) if r.status() == 503 => {
                let v: serde_json::Value = r.json().await.unwrap();
                assert!(v["reasons"].to_string().contains("shutting down"), "{v}");
                saw_not_ready = true;
                break;
            }
            Ok(r) => assert_eq!(r.status(), 200),
            Err(_) => {
                saw_not_ready = true; // port closed
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(saw_not_ready, "readyz stayed 200 after SIGTERM");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("daemon did not exit within the shutdown deadline")
        .unwrap();
    assert_eq!(status.code(), Some(0));

    let log = log.await.unwrap().join("\n");
    assert!(log.contains("store flushed"), "{log}");
    assert!(log.contains("\"message\":\"stopped\""), "{log}");
    assert!(!log.contains(TOKEN), "secret in logs");
    assert!(
        dir.path().join("data").exists(),
        "sled data directory created"
    );
}

#[tokio::test]
async fn a_taken_port_fails_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_revsync"))
        .args(["run", "--config"])
        .arg(dir.path())
        .env("ZD_TOKEN", TOKEN)
        .env("REVSYNC_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("REVSYNC_LOG__FORMAT", "text")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{port} (server.listen)"
        )),
        "{stderr}"
    );
}

fn sigterm(child: &Child) {
    let pid = child.id().unwrap() as i32;
    // SAFETY: kill(2) on our own child's pid touches no memory of ours.
    #[allow(
        unsafe_code,
        reason = "kill(2) of our own child: no memory-safety preconditions"
    )]
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(rc, 0);
}

/// SIGTERM, then wait for a clean exit and return the whole log.
async fn stop(mut child: Child, log: Log) -> String {
    sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("daemon did not exit")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    log.await.unwrap().join("\n")
}

#[tokio::test]
async fn without_a_configured_token_one_is_generated_kept_private_and_required() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let (child, base, log) = start(dir.path()).await;
    let http = reqwest::Client::new();

    let file = dir.path().join("data/admin_token");
    let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_eq!(token.len(), 64, "{token}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    // Customer data and queue changes are refused without it, before any body is read.
    let r = http
        .get(format!("{base}/records/ada@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "unauthorized");
    let r = http
        .post(format!("{base}/admin/resync"))
        .header("content-type", "text/plain")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "auth comes before the body is parsed");
    let r = http.get(format!("{base}/admin/dlq")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{base}/records/ada@example.com"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "known token, no such record");

    // The CLI finds the generated token in the store directory by itself.
    let addr = base.trim_start_matches("http://").to_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_revsync"))
        .args(["dlq", "list", "--config"])
        .arg(dir.path())
        .env("REVSYNC_SERVER__LISTEN", &addr)
        .env("ZD_TOKEN", TOKEN)
        .env_remove("REVSYNC_TOKEN")
        .output()
        .await
        .unwrap();
    succeeded(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no dead letters"));
    // A wrong --token is refused with a clear message.
    let out = Command::new(env!("CARGO_BIN_EXE_revsync"))
        .args(["dlq", "list", "--token", "nope", "--config"])
        .arg(dir.path())
        .env("REVSYNC_SERVER__LISTEN", &addr)
        .env("ZD_TOKEN", TOKEN)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the admin token"));

    let log = stop(child, log).await;
    assert!(
        log.contains(&file.display().to_string()),
        "where the token is: {log}"
    );
    assert!(!log.contains(&token), "the token itself is never logged");

    // A restart keeps the same token.
    let (child, base, log) = start(dir.path()).await;
    let r = http
        .get(format!("{base}/admin/dlq"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    stop(child, log).await;
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
}

#[tokio::test]
async fn insecure_no_auth_opens_the_admin_api_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let (child, base, log) = start_with(dir.path(), &["--insecure-no-auth"]).await;
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{base}/records/ada@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let status: serde_json::Value = http
        .get(format!("{base}/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["auth"], "disabled");
    assert!(
        status["warnings"][0]
            .as_str()
            .unwrap()
            .contains("authentication is disabled"),
        "{status}"
    );
    let log = stop(child, log).await;
    assert!(log.contains("authentication is disabled"), "{log}");
    assert!(!dir.path().join("data/admin_token").exists());
}

/// Every connector of the production template, each API a closed port on this host.
fn write_refused_upstreams(dir: &Path, port: u16) {
    // The default shutdown deadline (30 s): a wait that ignores shutdown shows in full.
    write_daemon(dir, "");
    let api = format!("http://127.0.0.1:{port}");
    let files = [
        // An account budget of one request a minute: every retry waits for a permit.
        ("hubspot", format!("type: hubspot\nparams: {{ token: t, base_url: '{api}' }}\nrate_limit: {{ requests: 1, per_secs: 60 }}\nobjects:\n  contacts: {{ kind: person }}\n  companies: {{ kind: organization }}\n")),
        ("salesforce", format!("type: salesforce\nparams: {{ auth: {{ flow: client_credentials, token_url: '{api}/token', client_id: c, client_secret: s }} }}\nobjects:\n  Contact: {{ kind: person }}\n  Account: {{ kind: organization }}\n")),
        // Three exports against the default budget of ten a minute: the later ones wait.
        ("zendesk", format!("type: zendesk\nparams: {{ base_url: '{api}/api/v2', auth: {{ method: oauth, access_token: t }} }}\nobjects:\n  users: {{ kind: person }}\n  organizations: {{ kind: organization }}\n  tickets: {{ kind: ticket, direction: in }}\n")),
        ("stripe", format!("type: stripe\nparams: {{ secret_key: sk_test_x, base_url: '{api}' }}\nobjects:\n  customers: {{ kind: organization }}\n")),
    ];
    for (name, body) in files {
        std::fs::write(
            dir.join(format!("connectors/{name}.yaml")),
            format!("version: 1\nid: {name}-main\n{body}"),
        )
        .unwrap();
    }
}

/// Issue 17: with every upstream refusing connections, the daemon is in retry back-offs,
/// rate-limit permits and export budgets when SIGTERM comes; none of them may hold the
/// exit (no write is on the wire), which took 17.6 s.
#[tokio::test]
async fn sigterm_ends_back_offs_and_limiter_waits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    write_refused_upstreams(dir.path(), port);
    let (child, _, log) = start_until(dir.path(), &[], "http request failed").await;
    // Well into the back-offs and the waits for permits.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let asked = std::time::Instant::now();
    let log = stop(child, log).await;
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(3), "exit took {took:?}:\n{log}");
    assert!(log.contains("\"message\":\"stopped\""), "{log}");
    assert!(!log.contains("abandoning"), "{log}");
}

/// Log lines going to a pipe (a file, journald, a log shipper) carry no colour codes, in
/// either format, and JSON lines parse one by one.
#[tokio::test]
async fn logs_to_a_pipe_are_plain_text_or_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let (child, _, log) = start(dir.path()).await;
    let log = stop(child, log).await;
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
    }
    assert!(!log.contains('\x1b'), "{log:?}");

    let mut child = run(dir.path(), &[])
        .env("REVSYNC_LOG__FORMAT", "text")
        .env_remove("NO_COLOR")
        .spawn()
        .expect("spawn revsync");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut text = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        let mut line = Vec::new();
        while !String::from_utf8_lossy(&line).contains("http server listening") {
            line.clear();
            let n = stderr.read_until(b'\n', &mut line).await.unwrap();
            assert!(n > 0, "daemon exited before listening");
            text.extend_from_slice(&line);
        }
    })
    .await
    .expect("daemon did not announce its address");
    sigterm(&child);
    stderr.read_to_end(&mut text).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("stopped"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "escape codes in piped logs: {text:?}"
    );
    assert!(!out.stdout.contains(&0x1b), "escape codes on stdout");
}

/// Issue 26: a client command needs no connector's secret. With `--url` it reads no
/// configuration at all; with `--config` only revsync.yaml (connector files name secrets
/// that an operator's shell does not hold).
#[tokio::test]
async fn client_commands_reach_the_daemon_without_any_connector_secret() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let (child, base, log) = start(dir.path()).await;
    let token = std::fs::read_to_string(dir.path().join("data/admin_token"))
        .unwrap()
        .trim()
        .to_owned();
    let cli = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_revsync"));
        c.args(args)
            // The connector file's ${ZD_TOKEN} is not set here, nor any REVSYNC_*.
            .env_remove("ZD_TOKEN")
            .env_remove("REVSYNC_TOKEN")
            .env_remove("REVSYNC_URL")
            .env_remove("REVSYNC_CONFIG_DIR")
            .current_dir(dir.path());
        c
    };

    let out = cli(&["status", "--url", &base, "--token", &token])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    succeeded(&out);
    assert!(stdout.contains("zendesk-test"), "{stdout}");

    let out = cli(&["records", "get", "nobody@example.com", "--url", &base])
        .env("REVSYNC_TOKEN", &token)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "answered, and no such record");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no record matches"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Through the configuration directory: revsync.yaml names the port (as an
    // environment override) and the token is the generated one, found by itself.
    let addr = base.trim_start_matches("http://");
    let out = cli(&["status", "--json", "--config"])
        .arg(dir.path())
        .env("REVSYNC_SERVER__LISTEN", addr)
        .output()
        .await
        .unwrap();
    succeeded(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["connectors"].is_array(), "{v}");

    // Only `server` is read: variables this shell lacks elsewhere in revsync.yaml (the
    // alert webhook, a retention bound) stop nothing.
    let daemon_file = dir.path().join("revsync.yaml");
    let written = std::fs::read_to_string(&daemon_file).unwrap();
    std::fs::write(
        &daemon_file,
        format!("{written}alerts:\n  webhook_url: ${{REVSYNC_TEST_UNSET_SLACK}}\nretention:\n  webhook_seen_ttl_secs: ${{REVSYNC_TEST_UNSET_TTL}}\n"),
    )
    .unwrap();
    let out = cli(&["status", "--json", "--config"])
        .arg(dir.path())
        .env("REVSYNC_SERVER__LISTEN", addr)
        .env_remove("REVSYNC_TEST_UNSET_SLACK")
        .env_remove("REVSYNC_TEST_UNSET_TTL")
        .output()
        .await
        .unwrap();
    succeeded(&out);
    // One inside `server` is needed, and named.
    std::fs::write(
        &daemon_file,
        written.replace(
            "server:\n",
            "server:\n  admin_token: ${REVSYNC_TEST_UNSET_TOKEN}\n",
        ),
    )
    .unwrap();
    let out = cli(&["status", "--config"])
        .arg(dir.path())
        .env("REVSYNC_SERVER__LISTEN", addr)
        .env_remove("REVSYNC_TEST_UNSET_TOKEN")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server.admin_token") && stderr.contains("REVSYNC_TEST_UNSET_TOKEN"),
        "{stderr}"
    );
    std::fs::write(&daemon_file, written).unwrap();

    // Replaying every dead letter of an empty queue did what was asked.
    let out = cli(&["dlq", "replay", "--all", "--url", &base, "--token", &token])
        .output()
        .await
        .unwrap();
    succeeded(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("replayed 0"));

    // Nothing answers at a URL: a clear error, exit 1.
    let out = cli(&["status", "--url", "http://127.0.0.1:9"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no daemon answers at http://127.0.0.1:9")
    );
    stop(child, log).await;
}
