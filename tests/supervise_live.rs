//! Supervise with a real egress on loopback: the agent sees its refusal through MCP, asks for
//! the route, the operator's decision goes in through the real `bot-bottle-supervise decide`
//! binary (as `docker exec` runs it), the wait answers `approved`, the route is live in egress
//! without a restart, and a timed grant leaves the routes by itself.

mod egress_common;

use std::time::{Duration, Instant};

use bot_bottle::sidecar::supervise::grants::GrantEvent;
use bot_bottle::sidecar::supervise::server::{self, Listener, SuperviseConfig};
use bot_bottle::sidecar::supervise::spool::{Decision, Lifetime, Verdict, now_rfc3339};
use egress_common::*;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

async fn call(
    c: &rmcp::service::RunningService<rmcp::service::RoleClient, ClientConfig>,
    tool: &'static str,
    args: Value,
) -> Value {
    let r = c
        .call_tool(
            CallToolRequestParams::new(tool).with_arguments(args.as_object().cloned().unwrap()),
        )
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true), "{r:?}");
    serde_json::from_str(&r.content[0].as_text().unwrap().text).unwrap()
}

/// Run the real daemon binary's `decide`, the way the host does through the engine.
fn decide(spool: &std::path::Path, routes: &std::path::Path, d: &Decision) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bot-bottle-supervise"))
        .args(["decide", "--spool"])
        .arg(spool)
        .arg("--routes")
        .arg(routes)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(d).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_route_goes_live_and_expires() {
    let h = start(&json!({"routes": [{"host": "api.test"}]}).to_string()).await;
    assert_eq!(h.curl("http://plain.test/x", &[]).await.status, 403);
    assert!(h.wait_for_audit(|l| l["host"] == "plain.test").await);

    let spool = h.dir.path().join("spool");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = SuperviseConfig {
        bottle: "dev-1".into(),
        spool: spool.clone(),
        routes_file: h.routes.clone(),
        audit_files: vec![h.audit.clone()],
        max_body: server::DEFAULT_MAX_BODY,
    };
    let srv = tokio::spawn(async move { server::serve(Listener::Tcp(listener), cfg).await });
    let c = ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp")),
        ))
        .await
        .unwrap();

    // The agent sees the refusal it got, with the same advice.
    let refusals = call(&c, "list-refusals", json!({})).await;
    assert_eq!(refusals[0]["host"], "plain.test");
    assert_eq!(refusals[0]["layer"], "allowlist");

    let r = call(
        &c,
        "propose-egress-route",
        json!({"host": "plain.test", "reason": "the task needs it"}),
    )
    .await;
    let id = r["id"].as_str().unwrap().to_string();
    let waiter = {
        let id = id.clone();
        let c2 = ClientConfig::default()
            .serve(StreamableHttpClientTransport::from_config(
                StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp")),
            ))
            .await
            .unwrap();
        tokio::spawn(async move {
            let v = call(
                &c2,
                "wait-for-decision",
                json!({"id": id, "timeout_seconds": 120}),
            )
            .await;
            let _ = c2.cancel().await;
            v
        })
    };

    // Approve for 3 seconds.
    let approved_at = Instant::now();
    let d = Decision {
        id: id.clone(),
        verdict: Verdict::Approved,
        decided_at: now_rfc3339(),
        lifetime: Some(Lifetime::Seconds(3)),
        route: None,
        note: None,
    };
    let (sp, rt) = (spool.clone(), h.routes.clone());
    tokio::task::spawn_blocking(move || decide(&sp, &rt, &d))
        .await
        .unwrap();
    let w = waiter.await.unwrap();
    assert_eq!(w["status"], "approved", "{w}");

    // Live without a restart.
    let mut live = None;
    for _ in 0..200 {
        if h.curl("http://plain.test/x", &[]).await.status == 200 {
            live = Some(approved_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let live = live.expect("the approved route never became live");
    eprintln!("approval to live: {} ms", live.as_millis());
    let routes = call(&c, "list-routes", json!({})).await;
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["host"] == "plain.test")
    );

    // The timed grant leaves by itself, and both events are on record.
    let mut refused_again = false;
    for _ in 0..100 {
        if h.curl("http://plain.test/x", &[]).await.status == 403 {
            refused_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused_again, "the expired grant is still live");
    let events: Vec<GrantEvent> = std::fs::read_to_string(spool.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["granted", "expired"]);
    assert!(events.iter().all(|e| e.id == id && e.host == "plain.test"));
    // The route egress started with is untouched.
    assert_eq!(h.curl("https://api.test/", &[]).await.status, 200);

    let _ = c.cancel().await;
    srv.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejection_reaches_the_waiting_agent_and_changes_nothing() {
    let h = start(&json!({"routes": [{"host": "api.test"}]}).to_string()).await;
    let spool = h.dir.path().join("spool");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = SuperviseConfig {
        bottle: "dev-1".into(),
        spool: spool.clone(),
        routes_file: h.routes.clone(),
        audit_files: Vec::new(),
        max_body: server::DEFAULT_MAX_BODY,
    };
    let srv = tokio::spawn(async move { server::serve(Listener::Tcp(listener), cfg).await });
    let c = ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp")),
        ))
        .await
        .unwrap();
    let before = std::fs::read_to_string(&h.routes).unwrap();
    let r = call(
        &c,
        "propose-egress-route",
        json!({"host": "plain.test", "reason": "why not"}),
    )
    .await;
    let id = r["id"].as_str().unwrap().to_string();
    let d = Decision {
        id: id.clone(),
        verdict: Verdict::Rejected,
        decided_at: now_rfc3339(),
        lifetime: None,
        route: None,
        note: Some("use the mirror instead".into()),
    };
    let (sp, rt) = (spool.clone(), h.routes.clone());
    tokio::task::spawn_blocking(move || decide(&sp, &rt, &d))
        .await
        .unwrap();
    let w = call(
        &c,
        "wait-for-decision",
        json!({"id": id, "timeout_seconds": 5}),
    )
    .await;
    assert_eq!(w["status"], "rejected");
    assert_eq!(w["detail"], "use the mirror instead");
    assert_eq!(std::fs::read_to_string(&h.routes).unwrap(), before);
    assert_eq!(h.curl("http://plain.test/x", &[]).await.status, 403);
    let _ = c.cancel().await;
    srv.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_once_grant_serves_one_request_and_methods_are_enforced() {
    let h = start(&json!({"routes": [{"host": "api.test"}]}).to_string()).await;
    let spool = h.spool.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = SuperviseConfig {
        bottle: "dev-1".into(),
        spool: spool.clone(),
        routes_file: h.routes.clone(),
        audit_files: vec![h.audit.clone()],
        max_body: server::DEFAULT_MAX_BODY,
    };
    let srv = tokio::spawn(async move { server::serve(Listener::Tcp(listener), cfg).await });
    let c = ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp")),
        ))
        .await
        .unwrap();
    let ask = |path: &'static str, method: &'static str| json!({"host": "plain.test", "path_prefixes": [path], "methods": [method], "reason": "r"});
    let once = call(&c, "propose-egress-route", ask("/once/", "GET")).await;
    let timed = call(&c, "propose-egress-route", ask("/read/", "GET")).await;
    for (r, lifetime) in [(&once, Lifetime::Once), (&timed, Lifetime::Session)] {
        let d = Decision {
            id: r["id"].as_str().unwrap().to_string(),
            verdict: Verdict::Approved,
            decided_at: now_rfc3339(),
            lifetime: Some(lifetime),
            route: None,
            note: None,
        };
        let (sp, rt) = (spool.clone(), h.routes.clone());
        tokio::task::spawn_blocking(move || decide(&sp, &rt, &d))
            .await
            .unwrap();
    }
    // Wait until the session grant is live; then the once grant is live too (same file).
    let mut live = false;
    for _ in 0..200 {
        if h.curl("http://plain.test/read/x", &[]).await.status == 200 {
            live = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(live, "the grants never became live");
    // Methods: the grant is for GET only.
    assert_eq!(
        h.curl("http://plain.test/read/x", &["-X", "POST", "-d", "x"])
            .await
            .status,
        403
    );
    assert!(
        h.wait_for_audit(|l| l["rule"] == "method-not-allowed")
            .await
    );
    // Once: exactly one request gets through.
    assert_eq!(h.curl("http://plain.test/once/a", &[]).await.status, 200);
    assert_eq!(h.curl("http://plain.test/once/a", &[]).await.status, 403);
    assert_eq!(h.curl("http://plain.test/once/b", &[]).await.status, 403);
    // Supervise retires the used grant and audits it.
    let once_id = once["id"].as_str().unwrap();
    let mut used = false;
    for _ in 0..100 {
        let text = std::fs::read_to_string(spool.join("events.jsonl")).unwrap_or_default();
        if text
            .lines()
            .map(|l| serde_json::from_str::<GrantEvent>(l).unwrap())
            .any(|e| e.event == "used" && e.id == once_id)
        {
            used = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(used, "the used once grant was not retired");
    let routes = call(&c, "list-routes", json!({})).await;
    let sources: Vec<&str> = routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["route", "session"]);
    let _ = c.cancel().await;
    srv.abort();
}

/// The decision wakes egress (inotify on the spool): with the poll an hour away, the grant is
/// still live as soon as `decide` has renamed the grants file into place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_goes_live_without_waiting_for_the_poll() {
    use bot_bottle::sidecar::supervise::spool::{Change, Spool};
    use bot_bottle::sidecar::supervise::validate;
    let h = start_with(
        &json!({"routes": [{"host": "api.test"}]}).to_string(),
        Options {
            reload_interval: Duration::from_secs(3600),
            ..Options::default()
        },
    )
    .await;
    assert_eq!(h.curl("http://plain.test/woken/x", &[]).await.status, 403);
    let route = validate::route("plain.test", &["/woken/".to_string()], &[]).unwrap();
    let req = Spool::open(&h.spool)
        .unwrap()
        .submit(Change::Route(route), validate::reason("r").unwrap())
        .unwrap();
    let d = Decision {
        id: req.id,
        verdict: Verdict::Approved,
        decided_at: now_rfc3339(),
        lifetime: Some(Lifetime::Session),
        route: None,
        note: None,
    };
    let (sp, rt) = (h.spool.clone(), h.routes.clone());
    tokio::task::spawn_blocking(move || decide(&sp, &rt, &d))
        .await
        .unwrap();
    let mut live = false;
    for _ in 0..200 {
        if h.curl("http://plain.test/woken/x", &[]).await.status == 200 {
            live = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(live, "the grant waited for the poll");
}
