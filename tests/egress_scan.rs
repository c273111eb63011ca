//! Secret scanning through the running proxy (N11, C5): a credential-shaped value anywhere the
//! agent controls is refused with layer `secret-scan` and never reaches the upstream; the
//! credential egress injects itself is not.

mod egress_common;

use base64::Engine;
use egress_common::*;
use std::io::Write;

const AWS_KEY: &str = "AKIAZ4MQ7XK2PL5RTV3N";
const GH_TOKEN: &str = "ghp_T3kW9xQ2mZ7rL5vB8nJ4cY6pF1hD0sG2aE9u";

fn routes() -> String {
    serde_json::json!({"routes": [
        {"host": "api.test", "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"},
        {"host": "open.test"},
        {"host": "other.test", "auth_scheme": "token", "token_env": "EGRESS_TOKEN_1"},
    ]})
    .to_string()
}

fn refused_by_scan(r: &Curl) -> bool {
    r.status == 403 && r.headers.to_ascii_lowercase().contains("layer=secret-scan")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_anywhere_in_the_request_are_refused() {
    let h = start(&routes()).await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("key={AWS_KEY}"));
    let hexed = hex::encode(GH_TOKEN);
    let urlenc: String = GH_TOKEN
        .chars()
        .map(|c| format!("%{:02X}", c as u32))
        .collect();
    let cases: Vec<(String, Vec<String>)> = vec![
        (format!("https://open.test/upload/{AWS_KEY}"), vec![]),
        (format!("https://open.test/q?k={GH_TOKEN}"), vec![]),
        (format!("https://open.test/q?k={urlenc}"), vec![]),
        (
            "https://open.test/h".into(),
            vec!["-H".into(), format!("X-Custom: {GH_TOKEN}")],
        ),
        (
            "https://open.test/j".into(),
            vec![
                "-H".into(),
                "Content-Type: application/json".into(),
                "--data".into(),
                format!("{{\"aws\": \"{AWS_KEY}\"}}"),
            ],
        ),
        (
            "https://open.test/m".into(),
            vec!["-F".into(), format!("file=token {GH_TOKEN}")],
        ),
        (
            "https://open.test/b".into(),
            vec!["--data".into(), b64.clone()],
        ),
        (
            "https://open.test/x".into(),
            vec!["--data".into(), hexed.clone()],
        ),
        // C5: a secret-shaped bearer to a route that injects nothing.
        (
            "https://open.test/a".into(),
            vec!["-H".into(), format!("Authorization: Bearer {GH_TOKEN}")],
        ),
    ];
    for (url, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = h.curl(url, &args).await;
        assert!(refused_by_scan(&r), "{url} {args:?}: {r:?}");
    }
    // gzip body.
    let gz = h.dir.path().join("body.gz");
    std::fs::write(&gz, gzip(format!("{{\"k\": \"{AWS_KEY}\"}}").as_bytes())).unwrap();
    let r = h
        .curl(
            "https://open.test/gz",
            &[
                "-H",
                "Content-Encoding: gzip",
                "--data-binary",
                &format!("@{}", gz.display()),
            ],
        )
        .await;
    assert!(refused_by_scan(&r), "{r:?}");
    assert!(h.tls.requests().is_empty(), "{:?}", h.tls.requests());
    let text = h.audit_text();
    assert!(
        !text.contains(AWS_KEY) && !text.contains(GH_TOKEN),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_credential_and_agent_placeholder_on_auth_route_pass() {
    let h = start(&routes()).await;
    // The agent's own bearer is replaced on an auth route, so its shape does not matter.
    let r = h
        .curl(
            "https://api.test/v1",
            &["-H", &format!("Authorization: Bearer {GH_TOKEN}")],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    // The credential egress injects (GitHub-shaped here) is not refused.
    let r = h.curl("https://other.test/repos", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let reqs = h.tls.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[0].header_values("authorization"),
        [format!("Bearer {TOKEN}")]
    );
    assert!(reqs[1].header_values("authorization")[0].starts_with("token ghp_"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_requests_pass_the_scanner() {
    let h = start(&routes()).await;
    let r = h
        .curl(
            "https://open.test/search?q=hello+world",
            &["--data", "{\"text\": \"nothing secret here\"}"],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(h.tls.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_deep_in_a_large_body_is_refused() {
    // Above the size scanned on the event loop: the blocking-pool scan must refuse it too,
    // plain and gzip-encoded, and the clean body of the same size must pass.
    let h = start(&routes()).await;
    let mut body: Vec<u8> = (0..(1usize << 20))
        .map(|i| b"lorem ipsum "[i % 12])
        .collect();
    let clean = h.dir.path().join("clean.bin");
    std::fs::write(&clean, &body).unwrap();
    body.extend_from_slice(format!(" key={AWS_KEY}").as_bytes());
    let dirty = h.dir.path().join("dirty.bin");
    std::fs::write(&dirty, &body).unwrap();
    let gz = h.dir.path().join("dirty.gz");
    std::fs::write(&gz, gzip(&body)).unwrap();
    let post = |file: &std::path::Path, gzip: bool| {
        let mut args = vec!["--data-binary".to_string(), format!("@{}", file.display())];
        if gzip {
            args.extend(["-H".into(), "Content-Encoding: gzip".into()]);
        }
        args
    };
    let h = &h;
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        h.curl("https://open.test/up", &args).await
    };
    let r = run(post(&dirty, false)).await;
    assert!(refused_by_scan(&r), "{r:?}");
    let r = run(post(&gz, true)).await;
    assert!(refused_by_scan(&r), "{r:?}");
    assert!(
        h.tls.requests().is_empty(),
        "nothing refused reached upstream"
    );
    let r = run(post(&clean, false)).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(h.tls.requests().len(), 1);
}
