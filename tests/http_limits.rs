//! The HTTP server's own limits, over real loopback sockets: slow or stalled clients are
//! disconnected, connections past the cap wait, and a foreign Host is refused.
// Test code: a panic here is a failed test, and helpers outside #[test] fns are not
// covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Daemon {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    async fn start(server: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("revsync.yaml"),
            format!(
                "version: 1\nserver:\n  admin_token: t0ken\n{server}store:\n  path: {}\nshutdown_timeout_secs: 5\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let cfg = revsync::config::load(
            dir.path(),
            &revsync::registry::Registry::builtin(),
            &BTreeMap::new(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(revsync::app::serve(
            cfg,
            revsync::registry::Registry::builtin(),
            listener,
            async move {
                let _ = rx.await;
            },
        ));
        Daemon {
            addr,
            stop: Some(tx),
            done,
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.done)
            .await
            .expect("stops")
            .unwrap()
            .unwrap();
    }
}

/// Read until the peer closes or `within` passes; true when it closed.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// One request on a fresh connection: (status, body).
async fn request(addr: SocketAddr, raw: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("an answer")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[tokio::test]
async fn half_sent_headers_are_disconnected_after_the_header_timeout() {
    let d = Daemon::start("  header_read_timeout_secs: 1\n  max_connections: 1000\n").await;
    let mut conns = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(d.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .await
            .unwrap();
        conns.push(s);
    }
    let started = Instant::now();
    let mut open = 0;
    for s in &mut conns {
        let left = Duration::from_secs(4).saturating_sub(started.elapsed());
        if !closed_within(s, left).await {
            open += 1;
        }
    }
    assert_eq!(
        open, 0,
        "connections still open 4 s after sending half a header"
    );
    // The server still answers.
    let (status, _) = request(
        d.addr,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    d.stop().await;
}

#[tokio::test]
async fn a_stalled_body_is_disconnected_after_the_idle_timeout() {
    let d = Daemon::start("  idle_timeout_secs: 1\n").await;
    let mut s = TcpStream::connect(d.addr).await.unwrap();
    s.write_all(
        b"POST /webhooks/nobody HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(4)).await);
    assert!(started.elapsed() >= Duration::from_millis(800));
    d.stop().await;
}

#[tokio::test]
async fn connections_past_the_cap_wait_for_a_free_slot() {
    let d = Daemon::start("  max_connections: 2\n  header_read_timeout_secs: 30\n").await;
    let first = TcpStream::connect(d.addr).await.unwrap();
    let _second = TcpStream::connect(d.addr).await.unwrap();
    // Let the accept loop take both before the third arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(d.addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    assert!(
        tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf))
            .await
            .is_err(),
        "a third connection was served past max_connections: 2"
    );
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(3), third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    d.stop().await;
}

#[tokio::test]
async fn a_foreign_host_is_refused_on_the_operator_api() {
    let d = Daemon::start("  allowed_hosts: [revsync.internal]\n").await;
    let get = |path: &str, host: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer t0ken\r\nConnection: close\r\n\r\n")
    };
    for path in [
        "/status",
        "/metrics",
        "/admin/dlq",
        "/records/ada@example.com",
    ] {
        let (status, body) = request(d.addr, &get(path, "evil.example:8080")).await;
        assert_eq!(status, 421, "{path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], "unknown_host");
    }
    for host in [
        format!("localhost:{}", d.addr.port()),
        d.addr.to_string(),
        "revsync.internal".to_owned(),
    ] {
        let (status, body) = request(d.addr, &get("/status", &host)).await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    // Webhooks and probes do not depend on the Host a proxy forwards.
    let (status, _) = request(d.addr, &get("/healthz", "evil.example")).await;
    assert_eq!(status, 200);
    let (status, _) = request(
        d.addr,
        "POST /webhooks/nobody HTTP/1.1\r\nHost: revsync:8080\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert_eq!(status, 404);
    d.stop().await;
}

#[tokio::test]
async fn status_and_metrics_can_require_the_token() {
    let get = |path: &str, auth: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n")
    };
    let d = Daemon::start("  status_auth: token\n").await;
    for path in ["/status", "/metrics"] {
        let (status, body) = request(d.addr, &get(path, "")).await;
        assert_eq!(status, 401, "{path}: {body}");
        let (status, body) = request(d.addr, &get(path, "Authorization: Bearer t0ken\r\n")).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, _) = request(d.addr, &get("/healthz", "")).await;
    assert_eq!(status, 200, "probes stay open");
    d.stop().await;

    // Default on loopback: public, and the store figures are there.
    let d = Daemon::start("").await;
    let (status, body) = request(d.addr, &get("/status", "")).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["store"]["backend"], "sled");
    // A fresh store may not have written a segment yet: the size is a figure, not yet > 0
    // (sled_store's own test checks it follows the flushes).
    assert!(v["store"]["size_on_disk_bytes"].is_u64(), "{v}");
    d.stop().await;
}

#[tokio::test]
async fn client_chosen_methods_and_paths_do_not_become_metric_labels() {
    let d = Daemon::start("").await;
    for i in 0..5 {
        request(
            d.addr,
            &format!("X-RANDOM-{i} /records/someone{i}@example.com HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        )
        .await;
        request(
            d.addr,
            &format!(
                "GET /no/such/path/{i} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
    }
    let (_, metrics) = request(
        d.addr,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(!metrics.contains("X-RANDOM"), "{metrics}");
    assert!(!metrics.contains("someone"), "{metrics}");
    assert!(!metrics.contains("/no/such"), "{metrics}");
    assert!(
        metrics.contains(
            r#"revsync_http_requests_total{route="unmatched",method="GET",status="404"} 5"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(r#"method="other""#), "{metrics}");
    for line in metrics.lines().filter(|l| l.starts_with("# TYPE")) {
        let name = line.split_whitespace().nth(2).unwrap();
        if line.ends_with("counter") {
            assert!(!name.ends_with("_ms"), "{line}");
        }
    }
    d.stop().await;
}

#[tokio::test]
async fn every_error_the_server_answers_is_json() {
    let d = Daemon::start("  max_body_bytes: 64\n").await;
    let post = |path: &str, ctype: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t0ken\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let big = "x".repeat(200);
    let cases = [
        (
            "GET /webhooks/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_owned(),
            405,
            "method_not_allowed",
        ),
        (post("/webhooks/x", "application/json", &big), 413, "payload_too_large"),
        (
            post(
                "/admin/resync",
                "application/json",
                &format!("{{\"connector\": \"{}\"}}", "x".repeat(65 * 1024)),
            ),
            413,
            "payload_too_large",
        ),
        (post("/admin/resync", "text/plain", "{}"), 415, "unsupported_media_type"),
        (post("/admin/resync", "application/json", "{}"), 422, "unprocessable_entity"),
        (post("/admin/resync", "application/json", "{"), 400, "bad_request"),
        (
            "GET /records/a?audit=lots HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t0ken\r\nConnection: close\r\n\r\n".to_owned(),
            400,
            "bad_request",
        ),
    ];
    for (raw, want, code) in cases {
        let (status, body) = request(d.addr, &raw).await;
        assert_eq!(status, want, "{raw}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{want}: not JSON ({e}): {body:?}"));
        assert_eq!(v["error"], code, "{body}");
        assert!(!v["message"].as_str().unwrap().is_empty(), "{body}");
    }
    d.stop().await;
}
