//! Soak client for the egress proxy: rounds of hostile and ordinary traffic, so a script can
//! watch the daemon's memory between rounds.
//!
//! ```text
//! egress_soak --proxy ADDR --host NAME --ca PEM --rounds N
//! ```
//! One round: garbage bytes, an oversized head, a head cut off mid-line, a refused CONNECT, bad
//! TLS after an accepted CONNECT, a TLS handshake dropped half-way, a request carrying a secret
//! (refused by the scanner), and a good request through the tunnel. Prints one JSON line with
//! counts of the answers seen; a good request that fails is counted as an error.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "support/connect.rs"]
mod support;

struct Opts {
    proxy: String,
    host: String,
    tls: Arc<rustls::ClientConfig>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut proxy = None;
    let mut host = None;
    let mut ca = None;
    let mut rounds = 100u32;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--proxy" => proxy = it.next(),
            "--host" => host = it.next(),
            "--ca" => ca = it.next(),
            "--rounds" => rounds = it.next().context("--rounds N")?.parse()?,
            other => bail!("unknown argument `{other}`"),
        }
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca.context("--ca PEM")?)? {
        roots.add(c?)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let o = Opts {
        proxy: proxy.context("--proxy ADDR")?,
        host: host.context("--host NAME")?,
        tls: Arc::new(tls),
    };
    let (mut ok, mut refused, mut closed, mut errors) = (0u64, 0u64, 0u64, 0u64);
    for _ in 0..rounds {
        for probe in HOSTILE {
            match hostile(&o, probe).await {
                Answer::Refused => refused += 1,
                Answer::Closed => closed += 1,
            }
        }
        bad_tls(&o).await;
        half_handshake(&o).await;
        match request(&o, "/soak?k=AKIAZ4MQ7XK2PL5RTV3N").await {
            Ok(403) => refused += 1,
            _ => errors += 1,
        }
        match request(&o, "/soak").await {
            Ok(200) => ok += 1,
            _ => errors += 1,
        }
    }
    println!(
        "{{\"rounds\":{rounds},\"ok\":{ok},\"refused\":{refused},\"closed\":{closed},\"errors\":{errors}}}"
    );
    Ok(())
}

const HOSTILE: &[&[u8]] = &[
    b"\x16\x03\x01\x00\xff garbage\r\n\r\n\0\0",
    b"GET http://nowhere.test/ HTTP/1.1\r\nHost: nowhere.test\r\n\r\n",
    b"CONNECT nowhere.test:443 HTTP/1.1\r\nHost: nowhere.test:443\r\n\r\n",
    b"GET http://x/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"CONNECT api.te",
];

enum Answer {
    Refused,
    Closed,
}

async fn hostile(o: &Opts, probe: &[u8]) -> Answer {
    let Ok(mut s) = TcpStream::connect(&o.proxy).await else {
        return Answer::Closed;
    };
    let _ = s.write_all(probe).await;
    if probe == HOSTILE[4] {
        // Dropped mid-head.
        return Answer::Closed;
    }
    let mut buf = [0u8; 512];
    match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 && buf.starts_with(b"HTTP/1.1 4") => Answer::Refused,
        _ => Answer::Closed,
    }
}

async fn connect_tunnel(o: &Opts) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(&o.proxy).await?;
    s.set_nodelay(true)?;
    support::connect_tunnel(&mut s, &format!("{}:443", o.host)).await?;
    Ok(s)
}

async fn bad_tls(o: &Opts) {
    if let Ok(mut s) = connect_tunnel(o).await {
        // A complete record (so the daemon need not wait for more) that is no ClientHello.
        let _ = s.write_all(b"\x16\x03\x01\x00\x10not a helloXXXXX").await;
        let mut buf = [0u8; 256];
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
    }
}

async fn half_handshake(o: &Opts) {
    // Send a real ClientHello, then vanish before finishing.
    if let Ok(s) = connect_tunnel(o).await {
        if let Ok(name) = ServerName::try_from(o.host.clone()) {
            let connector = tokio_rustls::TlsConnector::from(o.tls.clone());
            let _ =
                tokio::time::timeout(Duration::from_millis(1), connector.connect(name, s)).await;
        }
    }
}

async fn request(o: &Opts, path: &str) -> anyhow::Result<u16> {
    let s = connect_tunnel(o).await?;
    let mut tls = tokio_rustls::TlsConnector::from(o.tls.clone())
        .connect(ServerName::try_from(o.host.clone())?, s)
        .await?;
    tls.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            o.host
        )
        .as_bytes(),
    )
    .await?;
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut resp)).await;
    let line = String::from_utf8_lossy(&resp[..resp.len().min(12)]).into_owned();
    line.get(9..12)
        .and_then(|c| c.parse().ok())
        .context("no status line")
}
