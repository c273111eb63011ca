//! Loopback tests of the egress proxy: real clients (curl, a raw Rust client) through the
//! proxy to a recording TLS upstream.

mod egress_common;

use egress_common::*;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_injected_and_agent_token_never_reaches_upstream() {
    let h = start(&standard_routes()).await;
    let auth = format!("Authorization: Bearer {AGENT_TOKEN}");
    let r = h
        .curl(
            "https://api.test/v1/messages",
            &["-H", &auth, "--proxy-user", "agent:proxypass"],
        )
        .await;
    assert_eq!((r.exit, r.status), (0, 200), "{r:?}");
    assert_eq!(r.body, "ok\n");
    let reqs = h.tls.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].header_values("authorization"),
        vec![format!("Bearer {TOKEN}")]
    );
    assert!(reqs[0].header_values("proxy-authorization").is_empty());
    assert!(
        reqs.iter()
            .all(|q| q.headers.iter().all(|(_, v)| !v.contains(AGENT_TOKEN)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_requests_each_get_the_credential() {
    let h = start(&standard_routes()).await;
    let r = h
        .curl(
            "https://api.test/v1/a",
            &[
                "--next",
                "--proxy",
                &h.proxy_url(),
                "--cacert",
                h.bottle_ca.to_str().unwrap(),
                "https://api.test/v1/b",
            ],
        )
        .await;
    assert_eq!(r.exit, 0, "{r:?}");
    let reqs = h.tls.requests();
    let mut paths: Vec<&str> = reqs.iter().map(|q| q.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/v1/a", "/v1/b"]);
    assert!(
        reqs.iter()
            .all(|q| q.header_values("authorization") == [format!("Bearer {TOKEN}")])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_host_refused_at_connect_before_tls() {
    let h = start(&standard_routes()).await;
    let (head, _s) = h.connect("evil.test:443").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("x-bot-bottle-refusal: layer=allowlist; rule=host-not-in-routes"),
        "{head}"
    );
    assert!(lower.contains("propose-egress-route"));
    let r = h.curl("https://evil.test/", &[]).await;
    assert_eq!(r.connect_status, 403, "{r:?}");
    assert_ne!(r.exit, 0);
    assert!(h.tls.requests().is_empty());
    let lines = h.audit_lines();
    assert!(
        lines.iter().any(|l| l["host"] == "evil.test"
            && l["verdict"] == "deny"
            && l["layer"] == "allowlist")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_alike_hosts_and_ip_literals_get_no_route() {
    let h = start(&standard_routes()).await;
    for target in [
        "api.test.:443",
        "api.test.evil:443",
        "xapi.test:443",
        "127.0.0.1:443",
        "[::1]:443",
        "api.test:8443",
        "api.test:22",
    ] {
        let (head, _s) = h.connect(target).await;
        assert!(head.starts_with("HTTP/1.1 403"), "{target}: {head}");
    }
    assert!(h.tls.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_allowlist_enforced() {
    let h = start(&standard_routes()).await;
    let ok = h.curl("https://api.test/v1/ok", &[]).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    for path in ["/admin", "/v1", "/v1/../admin", "/v1/%2e%2e/admin"] {
        let r = h
            .curl(&format!("https://api.test{path}"), &["--path-as-is"])
            .await;
        assert_eq!(r.status, 403, "{path}: {r:?}");
        assert!(
            r.headers
                .to_ascii_lowercase()
                .contains("layer=path-allowlist"),
            "{path}: {}",
            r.headers
        );
        assert!(r.body.contains("propose-egress-route"));
    }
    assert_eq!(
        h.tls
            .requests()
            .iter()
            .map(|q| q.path.clone())
            .collect::<Vec<_>>(),
        ["/v1/ok"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_route_is_a_plain_tunnel() {
    let h = start(&standard_routes()).await;
    let upstream_ca = h.upstream_ca.clone();
    let r = h
        .curl_with_ca(
            "https://pass.test/any",
            &["-H", "Authorization: Bearer agent-own"],
            &upstream_ca,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let reqs = h.tls.requests();
    assert_eq!(reqs.len(), 1);
    // Not intercepted: the agent's own header arrives untouched, nothing injected.
    assert_eq!(reqs[0].header_values("authorization"), ["Bearer agent-own"]);
    // The bottle CA is not what the agent sees on a passthrough route.
    let r = h.curl("https://pass.test/any", &[]).await;
    assert_ne!(r.exit, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_follows_the_same_rules() {
    let h = start(&standard_routes()).await;
    let r = h
        .curl(
            "http://plain.test/x?y=1",
            &["-H", &format!("Authorization: token {AGENT_TOKEN}")],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let reqs = h.plain.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/x?y=1");
    assert_eq!(
        reqs[0].header_values("authorization"),
        [format!("token {TOKEN}")]
    );
    assert_eq!(reqs[0].header_values("host"), ["plain.test"]);
    let r = h.curl("http://evil.test/", &[]).await;
    assert_eq!(r.status, 403);
    let r = h.curl("http://plain.test:8080/", &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(h.plain.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_must_match_the_tunnel() {
    let h = start(&standard_routes()).await;
    let mut tls = h.tunnel("api.test:443", "api.test").await.unwrap();
    let resp = exchange(&mut tls, b"GET /v1/x HTTP/1.1\r\nHost: open.test\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(resp.contains("host-mismatch"));
    // A kept-alive tunnel: first request fine, then a new Host is refused.
    let mut tls = h.tunnel("api.test:443", "api.test").await.unwrap();
    let resp = exchange(
        &mut tls,
        b"GET /v1/a HTTP/1.1\r\nHost: api.test\r\n\r\nGET /v1/b HTTP/1.1\r\nHost: other.test\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("HTTP/1.1 403"), "{resp}");
    let reqs = h.tls.requests();
    assert_eq!(
        reqs.iter().map(|q| q.path.clone()).collect::<Vec<_>>(),
        ["/v1/a"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_mismatch_refused_without_injection() {
    let h = start(&standard_routes()).await;
    let res = h.tunnel("api.test:443", "open.test").await;
    assert!(res.is_err(), "handshake with a foreign SNI must fail");
    assert!(
        h.wait_for_audit(|l| l["rule"] == "sni-mismatch").await,
        "{}",
        h.audit_text()
    );
    assert!(h.tls.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lines_carry_the_decision_and_no_secret() {
    let h = start(&standard_routes()).await;
    let r = h
        .curl(
            "https://api.test/v1/q?key=abc",
            &["-H", &format!("Authorization: Bearer {AGENT_TOKEN}")],
        )
        .await;
    assert_eq!(r.status, 200);
    // The upstream echoes the credential back: the agent sees it masked, the audit log never.
    assert!(
        r.headers.contains("x-echo-authorization: Bearer *"),
        "{}",
        r.headers
    );
    assert!(!r.headers.contains(TOKEN));
    let _ = h.curl("https://evil.test/", &[]).await;
    let text = h.audit_text();
    assert!(
        !text.contains(TOKEN) && !text.contains(AGENT_TOKEN) && !text.contains("key=abc"),
        "{text}"
    );
    let lines = h.audit_lines();
    let allow = lines
        .iter()
        .find(|l| l["method"] == "GET" && l["host"] == "api.test")
        .expect("allow line");
    assert_eq!(allow["verdict"], "allow");
    assert_eq!(allow["path"], "/v1/q");
    assert_eq!(allow["status"], 200);
    assert_eq!(allow["injected"], "EGRESS_TOKEN_0");
    for key in ["time", "host", "method", "path", "verdict", "rule"] {
        assert!(lines.iter().all(|l| l.get(key).is_some()), "{key}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l["host"] == "evil.test" && l["verdict"] == "deny")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_reload_live() {
    let h = start(&serde_json::json!({"routes": [{"host": "api.test"}]}).to_string()).await;
    assert_eq!(h.curl("https://open.test/", &[]).await.connect_status, 403);
    // A kept-alive tunnel opened under the old policy.
    let mut old = h.tunnel("api.test:443", "api.test").await.unwrap();
    std::fs::write(
        &h.routes,
        serde_json::json!({"routes": [{"host": "open.test"}]}).to_string(),
    )
    .unwrap();
    let mut allowed = false;
    for _ in 0..100 {
        if h.curl("https://open.test/", &[]).await.status == 200 {
            allowed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(allowed, "new route never became live");
    // The removed route is refused, also on the connection opened before the reload.
    assert_eq!(h.curl("https://api.test/", &[]).await.connect_status, 403);
    let resp = exchange(&mut old, b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    // A broken file keeps the current policy.
    std::fs::write(&h.routes, "{not valid").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(h.curl("https://open.test/", &[]).await.status, 200);
}

/// What one request got: `200`, or the refusal as `<status>:<layer>` (from the CONNECT answer or
/// the response, whichever refused).
fn answer(c: &Curl) -> String {
    let layer = c
        .headers
        .lines()
        .filter_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-bot-bottle-refusal: layer=")
                .and_then(|v| v.split(';').next().map(str::to_string))
        })
        .next_back();
    match layer {
        Some(l) => format!("{}:{l}", c.status.max(c.connect_status)),
        None => c.status.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_live_reloads_each_request_sees_the_old_or_the_new_policy() {
    let old = serde_json::json!({"routes": [
        {"host": "api.test", "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"},
        {"host": "open.test"},
    ]})
    .to_string();
    let new = serde_json::json!({"routes": [
        {"host": "open.test", "path_allowlist": ["/new/"]},
        {"host": "other.test"},
    ]})
    .to_string();
    let h = std::sync::Arc::new(start(&old).await);
    // Each kind of request, and what the old and the new policy answer.
    let kinds: [(&str, &str, &str); 5] = [
        ("https://api.test/v1/x", "200", "403:allowlist"),
        ("https://open.test/old/x", "200", "403:path-allowlist"),
        ("https://open.test/new/x", "200", "200"),
        ("https://other.test/x", "403:allowlist", "200"),
        ("https://evil.test/x", "403:allowlist", "403:allowlist"),
    ];
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (h, done) = (h.clone(), done.clone());
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                for (i, (url, _, _)) in kinds.iter().enumerate() {
                    seen.push((i, answer(&h.curl(url, &[]).await)));
                }
            }
            seen
        }));
    }
    // Rewrite the file in place, in two writes with a pause longer than egress's settle time
    // between them (as an engine copy may), so egress also meets half-written files.
    for round in 0..16 {
        let text = if round % 2 == 0 { &new } else { &old };
        let (a, b) = text.split_at(text.len() / 2);
        let mut f = tokio::fs::File::create(&h.routes).await.unwrap();
        f.write_all(a.as_bytes()).await.unwrap();
        f.flush().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        f.write_all(b.as_bytes()).await.unwrap();
        f.flush().await.unwrap();
        drop(f);
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut seen = Vec::new();
    for c in clients {
        seen.extend(c.await.unwrap());
    }
    let mut wrong = Vec::new();
    let (mut as_old, mut as_new) = (0, 0);
    for (i, got) in &seen {
        let (url, o, n) = kinds[*i];
        if got != o && got != n {
            wrong.push(format!("{url}: {got}"));
        }
        if *i == 0 {
            if got == o {
                as_old += 1;
            } else if got == n {
                as_new += 1;
            }
        }
    }
    assert!(wrong.is_empty(), "neither policy's answer: {wrong:?}");
    assert!(
        as_old > 0 && as_new > 0,
        "both policies must have answered during the run: old {as_old}, new {as_new} of {}",
        seen.len()
    );
    // The upstream side: the credential on every request to its route, on no other.
    for q in h.tls.requests() {
        let host = q.header_values("host").join(",");
        let auth = q.header_values("authorization");
        if host == "api.test" {
            assert_eq!(auth, [format!("Bearer {TOKEN}")], "{q:?}");
        } else {
            assert!(auth.is_empty(), "{q:?}");
        }
    }
    // The old policy is back: the credential route answers again.
    let mut back = false;
    for _ in 0..50 {
        if h.curl("https://api.test/v1/after", &[]).await.status == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(back, "the old policy never came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_route_table_denies_everything() {
    let h = start(r#"{"routes": []}"#).await;
    for host in ["api.test", "open.test", "pass.test"] {
        assert_eq!(
            h.curl(&format!("https://{host}/"), &[])
                .await
                .connect_status,
            403
        );
    }
    assert_eq!(h.curl("http://plain.test/", &[]).await.status, 403);
    assert!(h.tls.requests().is_empty() && h.plain.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_attempts_get_400_and_are_never_forwarded() {
    let h = start(&standard_routes()).await;
    let attacks: [&[u8]; 4] = [
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/smuggled HTTP/1.1\r\nHost: api.test\r\n\r\n",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\nGET /v1/smuggled HTTP/1.1\r\nHost: api.test\r\n\r\n",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    ];
    for attack in attacks {
        let mut tls = h.tunnel("api.test:443", "api.test").await.unwrap();
        let resp = exchange(&mut tls, attack).await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
        assert_eq!(
            resp.lines().filter(|l| l.starts_with("HTTP/1.1 ")).count(),
            1,
            "exactly one answer: {resp}"
        );
    }
    // Same on the plain proxy listener.
    let mut s = h.raw().await;
    let resp = exchange(&mut s, b"POST http://plain.test/ HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET http://plain.test/smuggled HTTP/1.1\r\nHost: plain.test\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(h.tls.requests().is_empty(), "{:?}", h.tls.requests());
    assert!(h.plain.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_still_works() {
    let h = start(&standard_routes()).await;
    let mut tls = h.tunnel("api.test:443", "api.test").await.unwrap();
    let resp = exchange(&mut tls, b"POST /v1/up HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let reqs = h.tls.requests();
    assert_eq!(reqs[0].body, b"hello");
    assert_eq!(reqs[0].header_values("content-length"), ["5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_passes_on_allowlisted_host() {
    let h = start(&standard_routes()).await;
    let mut tls = h.tunnel("api.test:443", "api.test").await.unwrap();
    tls.write_all(b"GET /v1/ws HTTP/1.1\r\nHost: api.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await.unwrap();
    let head = read_head(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let echoed = exchange(&mut tls, b"frame-bytes").await;
    assert_eq!(echoed, "frame-bytes");
    let reqs = h.tls.requests();
    assert_eq!(
        reqs[0].header_values("authorization"),
        [format!("Bearer {TOKEN}")]
    );
    // WebSocket to a host without a route: refused at CONNECT.
    let (head, _s) = h.connect("ws.evil.test:443").await;
    assert!(head.starts_with("HTTP/1.1 403"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_port_is_not_an_origin_server() {
    let h = start(&standard_routes()).await;
    let mut s = h.raw().await;
    let resp = exchange(&mut s, b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("not-a-proxy-request"));
    assert!(h.tls.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_never_kills_the_daemon() {
    let limits = bot_bottle::sidecar::egress::limits::Limits {
        header_timeout: std::time::Duration::from_secs(1),
        max_header_bytes: 16 * 1024,
        ..Default::default()
    };
    let h = start_with(
        &standard_routes(),
        Options {
            limits,
            ..Default::default()
        },
    )
    .await;
    // Garbage.
    let mut s = h.raw().await;
    let resp = exchange(&mut s, b"\x16\x03\x01\x00\xff garbage \r\n\r\n\0\0\0").await;
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 400"),
        "{resp}"
    );
    // Oversized headers.
    let mut s = h.raw().await;
    let big = format!(
        "GET http://plain.test/ HTTP/1.1\r\nHost: plain.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let resp = exchange(&mut s, big.as_bytes()).await;
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 431") || resp.starts_with("HTTP/1.1 400"),
        "{resp}"
    );
    // Too many headers.
    let mut s = h.raw().await;
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let resp = exchange(
        &mut s,
        format!("GET http://plain.test/ HTTP/1.1\r\nHost: plain.test\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(!resp.starts_with("HTTP/1.1 200"), "{resp}");
    // Slow client: half a head, then silence past the header timeout.
    let mut slow = h.raw().await;
    slow.write_all(b"GET http://plain.test/ HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let resp = exchange(&mut slow, b"").await;
    let resp2 = exchange(&mut slow, b"").await;
    assert!(!resp.starts_with("HTTP/1.1 200") && !resp2.starts_with("HTTP/1.1 200"));
    // Half-close right after a request.
    let mut s = h.raw().await;
    s.write_all(b"GET http://plain.test/half HTTP/1.1\r\nHost: plain.test\r\n\r\n")
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let _ = exchange(&mut s, b"").await;
    // Bad TLS after CONNECT.
    let (head, mut s) = h.connect("api.test:443").await;
    assert!(head.starts_with("HTTP/1.1 200"));
    let _ = exchange(&mut s, b"\x16\x03\x01\x02\x00not really a client hello").await;
    // Abrupt drop mid-head.
    {
        let mut s = h.raw().await;
        s.write_all(b"CONNECT api.te").await.unwrap();
    }
    // Still serving.
    let r = h.curl("https://api.test/v1/alive", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(h.tls.requests().iter().all(|q| q.path == "/v1/alive"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_refused() {
    let limits = bot_bottle::sidecar::egress::limits::Limits {
        max_body_bytes: 1024,
        ..Default::default()
    };
    let h = start_with(
        &standard_routes(),
        Options {
            limits,
            ..Default::default()
        },
    )
    .await;
    let body = "x".repeat(4096);
    let r = h
        .curl("https://api.test/v1/up", &["--data-binary", &body])
        .await;
    assert_eq!(r.status, 413, "{r:?}");
    assert!(h.tls.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listens_on_a_unix_socket() {
    use tokio::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("egress.sock");
    let h = start_with(
        &standard_routes(),
        Options {
            unix: Some(sock.clone()),
            ..Default::default()
        },
    )
    .await;
    let mut s = UnixStream::connect(&sock).await.unwrap();
    let resp = exchange(
        &mut s,
        b"GET http://plain.test/u HTTP/1.1\r\nHost: plain.test\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let mut s = UnixStream::connect(&sock).await.unwrap();
    let resp = exchange(
        &mut s,
        b"CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert_eq!(h.plain.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_proxy_carries_the_traffic() {
    let (proxy, seen) = fake_upstream_proxy().await;
    let opts = Options {
        upstream_proxy: Some(format!("http://{proxy}")),
        ..Default::default()
    };
    let h = start_with(&standard_routes(), opts).await;
    let r = h.curl("https://api.test/v1/via", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let reqs = h.tls.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].header_values("authorization"),
        [format!("Bearer {TOKEN}")]
    );
    let r = h.curl("http://plain.test/p", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "via-proxy\n"), "{r:?}");
    let heads = seen.lock().unwrap().clone();
    assert!(heads.iter().any(|h| h.starts_with("CONNECT ")), "{heads:?}");
    let plain = heads
        .iter()
        .find(|h| h.starts_with("GET http://plain.test/p "))
        .expect("absolute-form request");
    assert!(plain.contains(&format!("token {TOKEN}")));
    // Refused hosts never reach the upstream proxy.
    let n = seen.lock().unwrap().len();
    assert_eq!(h.curl("https://evil.test/", &[]).await.connect_status, 403);
    assert_eq!(seen.lock().unwrap().len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_route_with_a_credential_is_intercepted_to_inject_it() {
    // The shape the launcher renders for a provider route (pipelock passthrough + auth).
    let routes = serde_json::json!({"routes": [{
        "host": "other.test", "path_allowlist": [], "tls_passthrough": true, "ssrf_ip_allowlist": [],
        "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"
    }]});
    let h = start(&format!("{routes:#}\n")).await;
    let r = h
        .curl(
            "https://other.test/v1/messages",
            &["-H", &format!("Authorization: Bearer {AGENT_TOKEN}")],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        h.tls.requests()[0].header_values("authorization"),
        [format!("Bearer {TOKEN}")]
    );
}

/// Wait (up to `max`) for the peer to close; true when it did.
async fn closed_by_peer<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    max: std::time::Duration,
) -> bool {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + max;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_disconnected() {
    let limits = bot_bottle::sidecar::egress::limits::Limits {
        header_timeout: std::time::Duration::from_secs(1),
        idle_timeout: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    let h = start_with(
        &standard_routes(),
        Options {
            limits,
            ..Default::default()
        },
    )
    .await;
    let mut slow = h.raw().await;
    slow.write_all(b"GET http://plain.test/ HTTP/1.1\r\nHost: pl")
        .await
        .unwrap();
    assert!(
        closed_by_peer(&mut slow, std::time::Duration::from_secs(20)).await,
        "slowloris kept open"
    );
    let mut idle = h.raw().await;
    idle.write_all(b"GET http://plain.test/i HTTP/1.1\r\nHost: plain.test\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed_by_peer(&mut idle, std::time::Duration::from_secs(20)).await,
        "idle keep-alive kept open"
    );
    let mut tunnel = h.tunnel("api.test:443", "api.test").await.unwrap();
    assert!(
        closed_by_peer(&mut tunnel, std::time::Duration::from_secs(20)).await,
        "idle tunnel kept open"
    );
    assert_eq!(h.plain.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood_is_bounded_and_service_continues() {
    let limits = bot_bottle::sidecar::egress::limits::Limits {
        max_connections: 32,
        ..Default::default()
    };
    let h = start_with(
        &standard_routes(),
        Options {
            limits,
            ..Default::default()
        },
    )
    .await;
    // Hold more connections than allowed, half of them mid-head.
    let mut held = Vec::new();
    for i in 0..64 {
        let mut s = tokio::net::TcpStream::connect(h.proxy).await.unwrap();
        if i % 2 == 0 {
            let _ = s.write_all(b"CONNECT api.test:443 HTTP/1.1\r\n").await;
        }
        held.push(s);
    }
    drop(held);
    // Once they are gone, the proxy serves again.
    let mut ok = false;
    for _ in 0..50 {
        if h.curl("https://api.test/v1/after", &[]).await.status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "proxy never recovered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_variants_reach_the_route_but_get_no_credential() {
    let h = start(&standard_routes()).await;
    // CONNECT spelled in upper case.
    let mut tls = h.tunnel("API.TEST:443", "api.test").await.unwrap();
    let resp = exchange(
        &mut tls,
        format!(
            "GET /v1/a HTTP/1.1\r\nHost: API.TEST\r\nAuthorization: Bearer {AGENT_TOKEN}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // Exact CONNECT host, Host header in another case.
    let mut tls = h.tunnel("api.test:443", "api.test").await.unwrap();
    let resp = exchange(&mut tls, b"GET /v1/b HTTP/1.1\r\nHost: Api.Test\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let reqs = h.tls.requests();
    assert_eq!(reqs.len(), 2);
    for q in &reqs {
        assert!(
            q.header_values("authorization").is_empty(),
            "{:?}",
            q.headers
        );
    }
    assert!(
        h.audit_lines()
            .iter()
            .any(|l| l["rule"] == "route-auth-withheld-inexact-host")
    );
    // Trailing dot: no route at all.
    let (head, _s) = h.connect("api.test.:443").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_with_expect_continue_is_scanned_and_forwarded() {
    let h = start(&standard_routes()).await;
    let file = h.dir.path().join("upload.bin");
    let body: Vec<u8> = (0..(3usize << 20)).map(|i| b"abcdefghij"[i % 10]).collect();
    std::fs::write(&file, &body).unwrap();
    let r = h
        .curl(
            "https://api.test/v1/upload",
            &[
                "-H",
                "Expect: 100-continue",
                "--data-binary",
                &format!("@{}", file.display()),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let reqs = h.tls.requests();
    assert_eq!(reqs[0].body.len(), body.len());
    assert!(reqs[0].header_values("expect").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_websocket_through_the_proxy_listener() {
    let h = start(&standard_routes()).await;
    let mut s = h.raw().await;
    s.write_all(b"GET http://plain.test/ws HTTP/1.1\r\nHost: plain.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(exchange(&mut s, b"ping-frame").await, "ping-frame");
    let mut s = h.raw().await;
    let resp = exchange(&mut s, b"GET http://evil.test/ws HTTP/1.1\r\nHost: evil.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_certificate_is_verified() {
    let routes = serde_json::json!({"routes": [{"host": "wrongname.test", "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"}]});
    let probe = start(r#"{"routes": []}"#).await;
    // Another harness's upstream: its CA is not trusted here and its certificate does not
    // name `wrongname.test`.
    let opts = Options {
        extra_pins: vec![format!("wrongname.test={}", probe.tls.addr)],
        ..Default::default()
    };
    let h = start_with(&routes.to_string(), opts).await;
    let r = h.curl("https://wrongname.test/", &[]).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(
        r.headers.to_ascii_lowercase().contains("layer=upstream"),
        "{}",
        r.headers
    );
    assert!(
        probe.tls.requests().is_empty(),
        "no request may reach an unverified upstream"
    );
}
