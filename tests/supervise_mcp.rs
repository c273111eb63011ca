//! MCP conformance of `bot-bottle-supervise`: a real MCP client (rmcp's) over real HTTP on
//! 127.0.0.1 — initialize, tools/list, tools/call, JSON-RPC errors for bad arguments, and an
//! oversized body refused before it is parsed.

use std::path::Path;
use std::time::Duration;

use bot_bottle::sidecar::supervise::server::{self, Listener, SuperviseConfig};
use bot_bottle::sidecar::supervise::spool::{Decision, Lifetime, Spool, Verdict, now_rfc3339};
use bot_bottle::sidecar::supervise::validate::RouteProposal;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig, ErrorCode};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAX_BODY: usize = 16 * 1024;

struct Fixture {
    _dir: tempfile::TempDir,
    spool: std::path::PathBuf,
    addr: std::net::SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let routes = dir.path().join("routes.json");
    std::fs::write(
        &routes,
        r#"{"routes": [{"host": "api.github.com", "path_allowlist": ["/repos/"], "auth_scheme": "Bearer", "token_env": "GH_TOKEN"}, {"host": "pypi.org"}]}"#,
    )
    .unwrap();
    let audit = dir.path().join("audit.log");
    write_audit(&audit);
    let git_audit = dir.path().join("git-gate-audit.log");
    write_git_audit(&git_audit);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = SuperviseConfig {
        bottle: "dev-abc123".into(),
        spool: spool.clone(),
        routes_file: routes,
        audit_files: vec![git_audit, audit, dir.path().join("absent.log")],
        max_body: MAX_BODY,
    };
    let server = tokio::spawn(async move {
        server::serve(Listener::Tcp(listener), cfg).await.unwrap();
    });
    Fixture {
        _dir: dir,
        spool,
        addr,
        server,
    }
}

fn write_audit(path: &Path) {
    use bot_bottle::sidecar::egress::audit::{Audit, Decision as AuditDecision};
    let mut text = String::new();
    for (host, allowed) in [
        ("example.com", false),
        ("pypi.org", true),
        ("example.com", false),
    ] {
        text.push_str(&Audit::line(&AuditDecision {
            host: host.into(),
            method: "GET".into(),
            path: "/x".into(),
            allowed,
            layer: if allowed { "egress" } else { "allowlist" }.into(),
            rule: if allowed {
                "route"
            } else {
                "host-not-in-routes"
            }
            .into(),
            status: if allowed { 200 } else { 403 },
            ..AuditDecision::default()
        }));
    }
    std::fs::write(path, text).unwrap();
}

/// A refused push, in the git-gate's log, older than egress's lines.
fn write_git_audit(path: &Path) {
    use bot_bottle::sidecar::egress::audit::{Audit, Decision as AuditDecision};
    let line = Audit::line(&AuditDecision {
        time: Some("2000-01-01T00:00:00.000Z".into()),
        host: "github.com".into(),
        method: "PUSH".into(),
        path: "/acme/app.git refs/heads/main".into(),
        allowed: false,
        layer: "git-gate".into(),
        rule: "secret-scan:aws-access-key".into(),
        status: 403,
        ..AuditDecision::default()
    });
    std::fs::write(path, line).unwrap();
}

async fn client(addr: std::net::SocketAddr) -> RunningService<RoleClient, ClientConfig> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp")),
    );
    ClientConfig::default().serve(transport).await.unwrap()
}

async fn call(
    c: &RunningService<RoleClient, ClientConfig>,
    tool: &'static str,
    args: Value,
) -> Result<CallToolResult, ServiceError> {
    let args = args.as_object().cloned().unwrap();
    c.call_tool(CallToolRequestParams::new(tool).with_arguments(args))
        .await
}

/// The JSON a tool answered with.
fn json_of(r: &CallToolResult) -> Value {
    assert_ne!(r.is_error, Some(true), "{r:?}");
    let text = r.content[0].as_text().expect("text content").text.clone();
    serde_json::from_str(&text).unwrap()
}

fn rpc_error(r: Result<CallToolResult, ServiceError>) -> rmcp::ErrorData {
    match r {
        Err(ServiceError::McpError(e)) => e,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

/// The first line of the answer (the server may keep the connection open after it).
async fn status_line(s: &mut tokio::net::TcpStream) -> String {
    let mut resp = Vec::new();
    let mut buf = [0u8; 1024];
    while !resp.windows(2).any(|w| w == b"\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => resp.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&resp).into_owned()
}

#[tokio::test]
async fn initialize_and_list_tools() {
    let f = start().await;
    let c = client(f.addr).await;
    let info = c.peer_info().expect("initialized");
    assert!(info.capabilities.tools.is_some());
    assert!(
        info.instructions
            .as_deref()
            .unwrap_or("")
            .contains("propose-egress-route")
    );
    let tools = c.list_all_tools().await.unwrap();
    let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "list-refusals",
            "list-routes",
            "propose-egress-route",
            "propose-image-change",
            "wait-for-decision"
        ]
    );
    let route = tools
        .iter()
        .find(|t| t.name == "propose-egress-route")
        .unwrap();
    let required = route.input_schema["required"].as_array().unwrap();
    assert!(required.contains(&json!("host")) && required.contains(&json!("reason")));
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn propose_wait_and_decide() {
    let f = start().await;
    let c = client(f.addr).await;
    let r = json_of(
        &call(
            &c,
            "propose-egress-route",
            json!({"host": "Example.COM", "path_prefixes": ["/api/"], "methods": ["GET"], "reason": "fetch the docs"}),
        )
        .await
        .unwrap(),
    );
    assert_eq!(r["status"], "pending");
    let id = r["id"].as_str().unwrap().to_string();

    // Queued in the spool exactly as validated.
    let spool = Spool::open(&f.spool).unwrap();
    let pending = spool.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, id);
    assert_eq!(pending[0].reason, "fetch the docs");

    // A short wait answers `pending`.
    let w = json_of(
        &call(
            &c,
            "wait-for-decision",
            json!({"id": id, "timeout_seconds": 0}),
        )
        .await
        .unwrap(),
    );
    assert_eq!(w["status"], "pending");

    // A long wait returns once the operator decides.
    let waiting = {
        let id = id.clone();
        let c2 = client(f.addr).await;
        tokio::spawn(async move {
            let r = call(
                &c2,
                "wait-for-decision",
                json!({"id": id, "timeout_seconds": 60}),
            )
            .await;
            let _ = c2.cancel().await;
            r
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    spool
        .decide(&Decision {
            id: id.clone(),
            verdict: Verdict::Approved,
            decided_at: now_rfc3339(),
            lifetime: Some(Lifetime::Once),
            route: Some(RouteProposal {
                host: "example.com".into(),
                path_prefixes: vec!["/api/".into()],
                methods: vec!["GET".into()],
            }),
            note: None,
        })
        .unwrap();
    let w = json_of(&waiting.await.unwrap().unwrap());
    assert_eq!(w["status"], "approved");
    assert_eq!(w["id"], id.as_str());

    // An image request is queued too.
    let r = json_of(
        &call(
            &c,
            "propose-image-change",
            json!({"dockerfile": "FROM debian:12\nRUN apt-get install -y jq\n", "reason": "needs jq"}),
        )
        .await
        .unwrap(),
    );
    assert_eq!(r["status"], "pending");
    assert_eq!(spool.pending().unwrap().len(), 1);
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn live_routes_and_refusals() {
    let f = start().await;
    let c = client(f.addr).await;
    let routes = json_of(&call(&c, "list-routes", json!({})).await.unwrap());
    assert_eq!(routes[0]["host"], "api.github.com");
    assert_eq!(routes[0]["path_allowlist"], json!(["/repos/"]));
    assert_eq!(routes[0]["credential_injected"], true);
    assert_eq!(routes[1]["host"], "pypi.org");
    assert!(
        !routes.to_string().contains("GH_TOKEN"),
        "credential names stay out"
    );

    let refusals = json_of(
        &call(&c, "list-refusals", json!({"limit": 10}))
            .await
            .unwrap(),
    );
    let list = refusals.as_array().unwrap();
    // Both gates' logs, oldest first (a log that does not exist is empty).
    assert_eq!(list.len(), 2, "{refusals}");
    assert_eq!(list[0]["layer"], "git-gate");
    assert_eq!(list[0]["method"], "PUSH");
    assert!(
        list[0]["reason"]
            .as_str()
            .unwrap()
            .contains("rule: secret-scan:aws-access-key"),
        "{refusals}"
    );
    assert_eq!(list[1]["host"], "example.com");
    assert_eq!(list[1]["count"], 2);
    assert_eq!(list[1]["bottle"], "dev-abc123");
    assert_eq!(list[1]["layer"], "allowlist");
    assert!(
        list[1]["reason"]
            .as_str()
            .unwrap()
            .contains("propose-egress-route")
    );
    let last = json_of(
        &call(&c, "list-refusals", json!({"limit": 1}))
            .await
            .unwrap(),
    );
    assert_eq!(last.as_array().unwrap().len(), 1, "{last}");
    assert_eq!(last[0]["host"], "example.com", "the newest one: {last}");
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn bad_arguments_are_json_rpc_errors() {
    let f = start().await;
    let c = client(f.addr).await;
    let cases = [
        (
            "propose-egress-route",
            json!({"host": "https://x.test/a", "reason": "r"}),
            "host",
        ),
        (
            "propose-egress-route",
            json!({"host": "x.test", "path_prefixes": ["api"], "reason": "r"}),
            "path_prefixes[0]",
        ),
        (
            "propose-egress-route",
            json!({"host": "x.test", "methods": ["TRACE"], "reason": "r"}),
            "methods[0]",
        ),
        (
            "propose-egress-route",
            json!({"host": "x.test", "reason": "line\nbreak"}),
            "reason",
        ),
        (
            "propose-egress-route",
            json!({"host": "x.test", "reason": "r", "admin": true}),
            "admin",
        ),
        ("propose-egress-route", json!({"reason": "r"}), "host"),
        (
            "propose-image-change",
            json!({"dockerfile": "RUN true", "reason": "r"}),
            "FROM",
        ),
        ("wait-for-decision", json!({"id": "../../etc/passwd"}), "id"),
        (
            "wait-for-decision",
            json!({"id": "0000000000000-000000"}),
            "no request",
        ),
        (
            "wait-for-decision",
            json!({"id": "0000000000000-000000", "timeout_seconds": 100000}),
            "timeout_seconds",
        ),
        ("list-refusals", json!({"limit": 0}), "limit"),
    ];
    for (tool, args, needle) in cases {
        let e = rpc_error(call(&c, tool, args.clone()).await);
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{tool} {args}: {e:?}");
        assert!(
            e.message.contains(needle),
            "{tool} {args}: `{}` should name `{needle}`",
            e.message
        );
    }
    let e = rpc_error(call(&c, "no-such-tool", json!({})).await);
    assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{e:?}");
    // Nothing was queued by any of them.
    assert!(Spool::open(&f.spool).unwrap().pending().unwrap().is_empty());
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let f = start().await;
    // Through the MCP client: a Dockerfile over the body bound fails, nothing is queued.
    let c = client(f.addr).await;
    let big = format!("FROM x\n{}", "#".repeat(MAX_BODY));
    let r = call(
        &c,
        "propose-image-change",
        json!({"dockerfile": big, "reason": "r"}),
    )
    .await;
    assert!(r.is_err(), "{r:?}");
    assert!(Spool::open(&f.spool).unwrap().pending().unwrap().is_empty());

    // On the wire: 413 for a declared length over the bound, before any JSON is read.
    let mut s = tokio::net::TcpStream::connect(f.addr).await.unwrap();
    let body = vec![b' '; MAX_BODY + 1];
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let _ = s.write_all(&body).await;
    let text = status_line(&mut s).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}

#[tokio::test]
async fn foreign_host_header_is_refused() {
    // DNS-rebinding guard: only loopback names (and the bundle alias) may address the server.
    let f = start().await;
    let mut s = tokio::net::TcpStream::connect(f.addr).await.unwrap();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: evil.example\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let text = status_line(&mut s).await;
    assert!(
        text.starts_with("HTTP/1.1 4"),
        "a foreign Host must be refused: {text}"
    );
}
