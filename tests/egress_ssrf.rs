//! SSRF guard through the running proxy: internal destinations are refused with layer `ssrf`
//! (before any TLS), whatever spelling reaches them, unless a CIDR allows them.

mod egress_common;

use egress_common::*;

fn refused_by_ssrf(head: &str) -> bool {
    head.starts_with("HTTP/1.1 403")
        && head
            .to_ascii_lowercase()
            .contains("x-bot-bottle-refusal: layer=ssrf")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_destinations_refused_in_every_form() {
    let pinned = [
        ("meta.test", "169.254.169.254"),
        ("priv.test", "10.0.0.5"),
        ("priv172.test", "172.20.1.1"),
        ("cgnat.test", "100.64.1.1"),
        ("alibaba.test", "100.100.100.200"),
        ("mapped.test", "::ffff:169.254.169.254"),
        ("mapped-lo.test", "::ffff:127.0.0.2"),
        ("v6lo.test", "::1"),
        ("v6ll.test", "fe80::1"),
        ("ula.test", "fd00::1"),
        ("aws6.test", "fd00:ec2::254"),
        ("mcast.test", "224.0.0.1"),
        ("zero.test", "0.0.0.0"),
        ("nat64.test", "64:ff9b::a9fe:a9fe"),
    ];
    let literals = [
        "2852039166",
        "0xa9fea9fe",
        "0251.0376.0251.0376",
        "169.254.169.254",
        "127.1",
        "0x7f.1",
        "[::ffff:a9fe:a9fe]",
        "[::1]",
    ];
    let mut routes: Vec<serde_json::Value> = pinned
        .iter()
        .map(|(h, _)| serde_json::json!({"host": h}))
        .collect();
    routes.extend(literals.iter().map(|h| serde_json::json!({"host": h})));
    let opts = Options {
        allow_loopback: false,
        extra_pins: pinned.iter().map(|(h, ip)| format!("{h}={ip}")).collect(),
        ..Default::default()
    };
    let h = start_with(&serde_json::json!({"routes": routes}).to_string(), opts).await;
    for (host, ip) in pinned {
        let (head, _s) = h.connect(&format!("{host}:443")).await;
        assert!(refused_by_ssrf(&head), "{host} -> {ip}: {head}");
    }
    for lit in literals {
        let (head, _s) = h.connect(&format!("{lit}:443")).await;
        assert!(refused_by_ssrf(&head), "{lit}: {head}");
    }
    // Plain HTTP too.
    let mut s = h.raw().await;
    let resp = exchange(
        &mut s,
        b"GET http://0xa9fea9fe/latest/meta-data/ HTTP/1.1\r\nHost: 0xa9fea9fe\r\n\r\n",
    )
    .await;
    assert!(refused_by_ssrf(&resp), "{resp}");
    let mut s = h.raw().await;
    let resp = exchange(
        &mut s,
        b"GET http://meta.test/latest/meta-data/ HTTP/1.1\r\nHost: meta.test\r\n\r\n",
    )
    .await;
    assert!(refused_by_ssrf(&resp), "{resp}");
    let lines = h.audit_lines();
    assert!(lines.iter().any(|l| l["host"] == "meta.test"
        && l["layer"] == "ssrf"
        && l["rule"] == "destination-metadata"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_upstream_refused_unless_a_cidr_allows_it() {
    let routes = serde_json::json!({"routes": [
        {"host": "api.test"},
        {"host": "lo.test", "ssrf_ip_allowlist": ["127.0.0.1/32"]},
    ]});
    let h = start_with(
        &routes.to_string(),
        Options {
            allow_loopback: false,
            ..Default::default()
        },
    )
    .await;
    let r = h.curl("https://api.test/", &[]).await;
    assert_eq!(r.connect_status, 403, "{r:?}");
    assert!(
        r.headers
            .to_ascii_lowercase()
            .contains("rule=destination-loopback"),
        "{}",
        r.headers
    );
    assert!(h.tls.requests().is_empty());
    // The route's own CIDR allows it.
    let r = h.curl("https://lo.test/", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(h.tls.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_cidr_flag_allows_its_range_only() {
    let routes = serde_json::json!({"routes": [{"host": "api.test"}, {"host": "meta.test"}]});
    let opts = Options {
        allow_loopback: true,
        extra_pins: vec!["meta.test=169.254.169.254".into()],
        ..Default::default()
    };
    let h = start_with(&routes.to_string(), opts).await;
    assert_eq!(h.curl("https://api.test/", &[]).await.status, 200);
    let (head, _s) = h.connect("meta.test:443").await;
    assert!(refused_by_ssrf(&head), "{head}");
}
