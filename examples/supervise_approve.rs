//! Approval→live benchmark: time from the operator's decision being applied in the bundle
//! (what `bot-bottle-supervise decide` runs) to the first request through a real egress that
//! the new grant lets through. Baseline, measured in the same run: one request through egress
//! on a route it already has (the cost of the probe itself).
//!
//! `supervise_approve [SAMPLES]` prints the median and p90 of SAMPLES approvals (default 30),
//! the baseline median and their ratio. Prints figures; asserts nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bot_bottle::sidecar::egress::limits::Limits;
use bot_bottle::sidecar::egress::{EgressConfig, EgressServer, ListenAddr, mint_bottle_ca};
use bot_bottle::sidecar::supervise::apply_decision;
use bot_bottle::sidecar::supervise::grants::Grants;
use bot_bottle::sidecar::supervise::spool::{Change, Decision, Lifetime, Spool, Verdict};
use bot_bottle::sidecar::supervise::validate::RouteProposal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A plain HTTP upstream answering `200 ok` and closing.
async fn upstream() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    addr
}

/// One request through the proxy; the response status.
async fn status(proxy: std::net::SocketAddr, host: &str) -> u16 {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let req = format!("GET http://{host}/x HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let line = String::from_utf8_lossy(&out);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let samples: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    let up = upstream().await;
    let routes = dir.path().join("routes.json");
    std::fs::write(&routes, "{\"routes\": [{\"host\": \"base.test\"}]}\n").unwrap();
    let spool_dir = dir.path().join("spool");
    let (cert, key) = mint_bottle_ca().unwrap();
    let mut resolve = vec![format!("base.test={up}").parse().unwrap()];
    for i in 0..samples {
        resolve.push(format!("g{i}.test={up}").parse().unwrap());
    }
    let cfg = EgressConfig {
        listen: ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()),
        routes_path: routes.clone(),
        grants_path: Some(spool_dir.join("granted.json")),
        once_used_dir: Some(spool_dir.join("once-used")),
        ca_cert_pem: cert,
        ca_key_pem: key,
        upstream_proxy: None,
        extra_roots_pem: vec![],
        system_roots: false,
        allow_cidrs: vec!["127.0.0.1/32".parse().unwrap()],
        resolve,
        audit_log: Some(dir.path().join("audit.jsonl")),
        limits: Limits::DEFAULT,
        // What the bundle runs with.
        reload_interval: bot_bottle::sidecar::egress::reload::DEFAULT_INTERVAL,
    };
    let server = EgressServer::bind_with_env(cfg, Arc::new(|_| None))
        .await
        .unwrap();
    let proxy = server.local_addr().unwrap();
    tokio::spawn(server.run());

    let mut base = Vec::new();
    for _ in 0..samples {
        let t = Instant::now();
        assert_eq!(status(proxy, "base.test").await, 200);
        base.push(t.elapsed());
    }

    let spool = Spool::open(&spool_dir).unwrap();
    let grants = Grants::new(&spool_dir, &routes);
    let mut live = Vec::new();
    for i in 0..samples {
        let host = format!("g{i}.test");
        assert_eq!(status(proxy, &host).await, 403);
        let req = spool
            .submit(
                Change::Route(RouteProposal {
                    host: host.clone(),
                    path_prefixes: vec![],
                    methods: vec![],
                }),
                "bench".into(),
            )
            .unwrap();
        let d = Decision {
            id: req.id,
            verdict: Verdict::Approved,
            decided_at: String::new(),
            lifetime: Some(Lifetime::Session),
            route: None,
            note: None,
        };
        // Start at a random point of egress's poll cycle, as an operator would.
        tokio::time::sleep(Duration::from_millis(rand_ms(i))).await;
        let t = Instant::now();
        apply_decision(&spool, &grants, &d).unwrap();
        loop {
            if status(proxy, &host).await == 200 {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{host} never went live"
            );
        }
        live.push(t.elapsed());
    }
    base.sort();
    live.sort();
    let (lm, bm) = (pct(&live, 0.5), pct(&base, 0.5));
    println!("samples                       {samples}");
    println!(
        "approval -> live median       {:.1} ms (p90 {:.1} ms, max {:.1} ms; goal < 200 ms)",
        ms(lm),
        ms(pct(&live, 0.9)),
        ms(*live.last().unwrap())
    );
    println!("one request (baseline) median {:.2} ms", ms(bm));
    println!(
        "ratio approval->live / request {:.1}",
        lm.as_secs_f64() / bm.as_secs_f64()
    );
}

/// A spread of start offsets over 0–59 ms without a random source.
fn rand_ms(i: usize) -> u64 {
    ((i * 37) % 60) as u64
}
