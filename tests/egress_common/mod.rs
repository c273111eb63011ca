//! Loopback harness for the egress tests: a recording TLS upstream (test CA), a plain HTTP
//! upstream, the proxy in-process, and clients (curl and a raw Rust client).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_bottle::sidecar::egress::config::{EgressConfig, ListenAddr, ResolvePin};
use bot_bottle::sidecar::egress::limits::Limits;
use bot_bottle::sidecar::egress::{EgressServer, mint_bottle_ca};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub(crate) const TOKEN: &str = "tok-live-4f9a2c7e1b";
pub(crate) const AGENT_TOKEN: &str = "agent-placeholder-77";

/// What the upstream received.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Recorded {
    pub(crate) fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

pub(crate) type Log = Arc<Mutex<Vec<Recorded>>>;

pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    pub(crate) log: Log,
}

impl Upstream {
    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }
}

pub(crate) struct TestCa {
    pub(crate) cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub(crate) fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "egress test upstream CA");
        let cert = p.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    pub(crate) fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let der_key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der_key)
        .unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

async fn upstream_service(
    log: Log,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let websocket = req
        .headers()
        .get("upgrade")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let on_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let auth = parts.headers.get("authorization").cloned();
    log.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    });
    if let Some(on) = on_upgrade {
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        return Ok(Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    let mut resp = Response::builder()
        .status(200)
        .header("content-type", "text/plain");
    if let Some(a) = auth {
        // Like a misbehaving upstream: echo the credential back.
        resp = resp.header("x-echo-authorization", a);
    }
    Ok(resp.body(Full::new(Bytes::from_static(b"ok\n"))).unwrap())
}

async fn serve_upstream_conn<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: S, log: Log) {
    let svc = service_fn(move |req| upstream_service(log.clone(), req));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await;
}

pub(crate) async fn tls_upstream(ca: &TestCa, names: &[&str]) -> Upstream {
    let cfg = ca.server_config(names);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let l2 = log.clone();
    tokio::spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let log = l2.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(s).await {
                    serve_upstream_conn(tls, log).await;
                }
            });
        }
    });
    Upstream { addr, log }
}

pub(crate) async fn plain_upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let l2 = log.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve_upstream_conn(s, l2.clone()));
        }
    });
    Upstream { addr, log }
}

/// The proxy and everything around it.
pub(crate) struct Harness {
    pub(crate) proxy: SocketAddr,
    pub(crate) tls: Upstream,
    pub(crate) plain: Upstream,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) bottle_ca: PathBuf,
    pub(crate) upstream_ca: PathBuf,
    pub(crate) routes: PathBuf,
    pub(crate) audit: PathBuf,
    /// Where supervise keeps its spool; egress reads its grants file from there.
    pub(crate) spool: PathBuf,
}

/// Hosts pinned to the TLS upstream.
pub(crate) const TLS_HOSTS: [&str; 5] = [
    "api.test",
    "pass.test",
    "open.test",
    "other.test",
    "lo.test",
];

pub(crate) struct Options {
    pub(crate) allow_loopback: bool,
    pub(crate) extra_pins: Vec<String>,
    pub(crate) limits: Limits,
    pub(crate) unix: Option<PathBuf>,
    pub(crate) upstream_proxy: Option<String>,
    /// How often egress polls its policy files (inotify wakes it sooner).
    pub(crate) reload_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            allow_loopback: true,
            extra_pins: vec![],
            limits: Limits::DEFAULT,
            unix: None,
            upstream_proxy: None,
            reload_interval: Duration::from_millis(100),
        }
    }
}

pub(crate) async fn start(routes_json: &str) -> Harness {
    start_with(routes_json, Options::default()).await
}

pub(crate) async fn start_with(routes_json: &str, opts: Options) -> Harness {
    let ca = TestCa::new();
    let tls = tls_upstream(&ca, &TLS_HOSTS).await;
    let plain = plain_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (bottle_cert, bottle_key) = mint_bottle_ca().unwrap();
    let bottle_ca = dir.path().join("ca.pem");
    std::fs::write(&bottle_ca, &bottle_cert).unwrap();
    let upstream_ca = dir.path().join("upstream-ca.pem");
    std::fs::write(&upstream_ca, &ca.cert_pem).unwrap();
    let routes = dir.path().join("routes.json");
    std::fs::write(&routes, routes_json).unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut resolve: Vec<ResolvePin> = TLS_HOSTS
        .iter()
        .map(|h| format!("{h}={}", tls.addr).parse().unwrap())
        .collect();
    resolve.push(format!("plain.test={}", plain.addr).parse().unwrap());
    resolve.extend(opts.extra_pins.iter().map(|p| p.parse().unwrap()));
    let listen = match &opts.unix {
        Some(p) => ListenAddr::Unix(p.clone()),
        None => ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()),
    };
    // Supervise's spool exists before egress starts, as in the bundle.
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let cfg = EgressConfig {
        listen,
        routes_path: routes.clone(),
        grants_path: Some(spool.join("granted.json")),
        once_used_dir: Some(spool.join("once-used")),
        ca_cert_pem: bottle_cert,
        ca_key_pem: bottle_key,
        upstream_proxy: opts.upstream_proxy.as_deref().map(|u| u.parse().unwrap()),
        extra_roots_pem: vec![ca.cert_pem.clone()],
        system_roots: false,
        allow_cidrs: if opts.allow_loopback {
            vec!["127.0.0.1/32".parse().unwrap()]
        } else {
            vec![]
        },
        resolve,
        audit_log: Some(audit.clone()),
        limits: opts.limits,
        reload_interval: opts.reload_interval,
    };
    let env = Arc::new(|k: &str| match k {
        "EGRESS_TOKEN_0" => Some(TOKEN.to_string()),
        "EGRESS_TOKEN_1" => Some("ghp_R8x2Lq9Vt4Kp7Wm3Zn6Yb1Hc5Jd0Fg2Sa8Ue".to_string()),
        _ => None,
    });
    let server = EgressServer::bind_with_env(cfg, env).await.unwrap();
    let proxy = server
        .local_addr()
        .unwrap_or_else(|| "127.0.0.1:1".parse().unwrap());
    tokio::spawn(server.run());
    Harness {
        proxy,
        tls,
        plain,
        dir,
        bottle_ca,
        upstream_ca,
        routes,
        audit,
        spool,
    }
}

/// Result of one curl run.
#[derive(Debug)]
pub(crate) struct Curl {
    pub(crate) exit: i32,
    pub(crate) status: u16,
    pub(crate) connect_status: u16,
    pub(crate) headers: String,
    pub(crate) body: String,
}

impl Harness {
    pub(crate) fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy)
    }

    /// `curl --proxy` with the bottle CA trusted; `args` go before the URL.
    pub(crate) async fn curl(&self, url: &str, args: &[&str]) -> Curl {
        self.curl_with_ca(url, args, &self.bottle_ca.clone()).await
    }

    pub(crate) async fn curl_with_ca(
        &self,
        url: &str,
        args: &[&str],
        ca: &std::path::Path,
    ) -> Curl {
        let headers = self.dir.path().join(format!("h-{}", rand_suffix()));
        let out = tokio::process::Command::new("curl")
            .arg("-sS")
            .arg("--max-time")
            .arg("10")
            .arg("--proxy")
            .arg(self.proxy_url())
            .arg("--cacert")
            .arg(ca)
            .arg("-D")
            .arg(&headers)
            .arg("-w")
            .arg("\n%{http_code} %{http_connect}")
            .args(args)
            .arg(url)
            .output()
            .await
            .expect("curl runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, codes) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
        let mut codes = codes
            .split_whitespace()
            .map(|c| c.parse::<u16>().unwrap_or(0));
        Curl {
            exit: out.status.code().unwrap_or(-1),
            status: codes.next().unwrap_or(0),
            connect_status: codes.next().unwrap_or(0),
            headers: std::fs::read_to_string(&headers).unwrap_or_default(),
            body: body.to_string(),
        }
    }

    pub(crate) fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }

    pub(crate) fn audit_text(&self) -> String {
        std::fs::read_to_string(&self.audit).unwrap_or_default()
    }

    /// Raw TCP connection to the proxy.
    pub(crate) async fn raw(&self) -> TcpStream {
        let s = TcpStream::connect(self.proxy).await.unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// CONNECT through the proxy and return the head of its answer and the stream.
    pub(crate) async fn connect(&self, target: &str) -> (String, TcpStream) {
        let mut s = self.raw().await;
        s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let head = read_head(&mut s).await;
        (head, s)
    }

    /// CONNECT then TLS with `sni`, trusting the bottle CA.
    pub(crate) async fn tunnel(
        &self,
        target: &str,
        sni: &str,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let (head, s) = self.connect(target).await;
        assert!(head.starts_with("HTTP/1.1 200"), "CONNECT answer: {head}");
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(&self.bottle_ca).unwrap();
        for c in CertificateDer::pem_slice_iter(&pem) {
            roots.add(c.unwrap()).unwrap();
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        connector
            .connect(ServerName::try_from(sni.to_string()).unwrap(), s)
            .await
    }

    pub(crate) async fn wait_for_audit(&self, pred: impl Fn(&serde_json::Value) -> bool) -> bool {
        for _ in 0..100 {
            if self.audit_lines().iter().any(&pred) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Read an HTTP head (up to the blank line) byte by byte.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
        match s.read(&mut b).await {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Send a raw request and read the whole answer until the peer closes or `timeout`.
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    request: &[u8],
) -> String {
    let _ = s.write_all(request).await;
    // A TLS client may keep written bytes buffered until flushed.
    let _ = s.flush().await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(1500), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The standard routes used by most tests.
pub(crate) fn standard_routes() -> String {
    serde_json::json!({"routes": [
        {"host": "api.test", "path_allowlist": ["/v1/"], "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"},
        {"host": "open.test"},
        {"host": "pass.test", "tls_passthrough": true},
        {"host": "plain.test", "auth_scheme": "token", "token_env": "EGRESS_TOKEN_0"},
    ]})
    .to_string()
}

/// Request heads seen by a [`head_recording_server`].
pub(crate) type Heads = Arc<Mutex<Vec<String>>>;

/// A loopback server that records each connection's request head, then lets `answer` reply
/// on the stream.
pub(crate) async fn head_recording_server<F, Fut>(answer: F) -> (SocketAddr, Heads)
where
    F: Fn(String, TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Heads = Arc::default();
    let seen2 = seen.clone();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen2.clone();
            let answer = answer.clone();
            tokio::spawn(async move {
                let head = read_head(&mut s).await;
                seen.lock().unwrap().push(head.clone());
                answer(head, s).await;
            });
        }
    });
    (addr, seen)
}

/// A minimal upstream HTTP proxy (like pipelock): records each request head; tunnels CONNECT
/// to the named target, answers absolute-form requests itself with `via-proxy`.
pub(crate) async fn fake_upstream_proxy() -> (SocketAddr, Heads) {
    head_recording_server(|head, mut s| async move {
        let line = head.lines().next().unwrap_or("").to_string();
        let mut parts = line.split_whitespace();
        if parts.next() == Some("CONNECT") {
            let target = parts.next().unwrap_or("").to_string();
            let Ok(mut up) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = s
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await;
            let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
        } else {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nconnection: close\r\n\r\nvia-proxy\n")
                .await;
        }
    })
    .await
}
