//! The `bot-bottle-egress` binary: flags, one-line errors, and a real run on a unix socket.

mod egress_common;

use assert_cmd::Command;
use egress_common::*;

#[test]
fn help_lists_every_flag() {
    let out = Command::cargo_bin("bot-bottle-egress")
        .unwrap()
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--routes",
        "--ca-cert",
        "--ca-key",
        "--upstream-proxy",
        "--upstream-ca",
        "--extra-ca",
        "--allow-cidr",
        "--resolve",
        "--audit-log",
        "--max-header-bytes",
        "--max-headers",
        "--max-body-bytes",
        "--header-timeout",
        "--idle-timeout",
        "--max-connections",
        "--threads",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }
}

fn ca_files(dir: &std::path::Path) -> (String, String) {
    let (cert, key) = bot_bottle::sidecar::egress::mint_bottle_ca().unwrap();
    let c = dir.join("ca.pem");
    let k = dir.join("ca-key.pem");
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    (c.display().to_string(), k.display().to_string())
}

/// Run the binary against `listen` and `routes` with the CA files and `extra` flags; the
/// environment never holds `EGRESS_TOKEN_7`.
fn egress_run(
    listen: &str,
    routes: &std::path::Path,
    ca: &(String, String),
    extra: &[&str],
) -> std::process::Output {
    Command::cargo_bin("bot-bottle-egress")
        .unwrap()
        .env_remove("EGRESS_TOKEN_7")
        .args(["--listen", listen, "--routes", routes.to_str().unwrap()])
        .args(["--ca-cert", &ca.0, "--ca-key", &ca.1])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn startup_errors_are_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_files(dir.path());
    let one_line_error = |out: &std::process::Output, needle: &str| {
        assert_eq!(out.status.code(), Some(1), "{needle}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("bot-bottle-egress: error: ") && err.contains(needle),
            "{err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    };

    let missing = dir.path().join("nope.json");
    one_line_error(&egress_run("127.0.0.1:0", &missing, &ca, &[]), "nope.json");

    let routes = dir.path().join("routes.json");
    std::fs::write(
        &routes,
        r#"{"routes": [{"host": "a.test", "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_7"}]}"#,
    )
    .unwrap();
    let out = egress_run("127.0.0.1:0", &routes, &ca, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("EGRESS_TOKEN_7"), "{err}");

    one_line_error(&egress_run("nonsense", &routes, &ca, &[]), "nonsense");
    for threads in ["0", "65", "x"] {
        one_line_error(
            &egress_run("127.0.0.1:0", &routes, &ca, &["--threads", threads]),
            "--threads",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_on_a_unix_socket_with_token_from_env() {
    let plain = plain_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = ca_files(dir.path());
    let routes = dir.path().join("routes.json");
    std::fs::write(
        &routes,
        r#"{"routes": [{"host": "plain.test", "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"}]}"#,
    )
    .unwrap();
    let sock = dir.path().join("egress.sock");
    let audit = dir.path().join("audit.jsonl");
    let bin = assert_cmd::cargo::cargo_bin("bot-bottle-egress");
    let mut child = tokio::process::Command::new(bin)
        .env("EGRESS_TOKEN_0", TOKEN)
        .args([
            "--listen",
            &format!("unix:{}", sock.display()),
            "--routes",
            routes.to_str().unwrap(),
        ])
        .args([
            "--ca-cert",
            &c,
            "--ca-key",
            &k,
            "--audit-log",
            audit.to_str().unwrap(),
        ])
        .args([
            "--resolve",
            &format!("plain.test={}", plain.addr),
            "--allow-cidr",
            "127.0.0.0/8",
        ])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stream = None;
    for _ in 0..100 {
        if let Ok(s) = tokio::net::UnixStream::connect(&sock).await {
            stream = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut s = stream.expect("egress socket never appeared");
    let resp = exchange(&mut s, b"GET http://plain.test/bin HTTP/1.1\r\nHost: plain.test\r\nAuthorization: Bearer agent\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let reqs = plain.requests();
    assert_eq!(
        reqs[0].header_values("authorization"),
        [format!("Bearer {TOKEN}")]
    );
    let log = std::fs::read_to_string(&audit).unwrap();
    assert!(
        log.contains("\"verdict\":\"allow\"") && !log.contains(TOKEN),
        "{log}"
    );
    child.kill().await.unwrap();
}
