//! Benchmark load generator for HTTPS, direct or through an HTTP CONNECT proxy.
//!
//! ```text
//! egress_load --target ADDR --host NAME --port PORT --ca PEM [--proxy] [--new-conn] -c N -d SECS [--label L]
//! egress_load mint-ca DIR      # writes DIR/ca.pem and DIR/ca-key.pem (the bottle CA)
//! ```
//! Prints one JSON line: requests, errors, req/s, p50 and p99 latency in milliseconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

#[path = "support/connect.rs"]
mod support;

#[derive(Clone)]
struct Opts {
    target: String,
    host: String,
    port: u16,
    proxy: bool,
    new_conn: bool,
    conc: usize,
    secs: u64,
    label: String,
    tls: Arc<rustls::ClientConfig>,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("mint-ca") {
        let dir = std::path::PathBuf::from(args.get(1).context("mint-ca DIR")?);
        let (cert, key) = bot_bottle::sidecar::egress::mint_bottle_ca()?;
        std::fs::write(dir.join("ca.pem"), cert)?;
        std::fs::write(dir.join("ca-key.pem"), key)?;
        return Ok(());
    }
    let mut target = None;
    let mut host = "localhost".to_string();
    let mut port = 443;
    let mut cas = Vec::new();
    let (mut proxy, mut new_conn, mut conc, mut secs) = (false, false, 1usize, 5u64);
    let mut label = String::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--target" => target = it.next(),
            "--host" => host = it.next().context("--host")?,
            "--port" => port = it.next().context("--port")?.parse()?,
            "--ca" => cas.push(it.next().context("--ca")?),
            "--proxy" => proxy = true,
            "--new-conn" => new_conn = true,
            "-c" => conc = it.next().context("-c")?.parse()?,
            "-d" => secs = it.next().context("-d")?.parse()?,
            "--label" => label = it.next().context("--label")?,
            other => bail!("unknown argument `{other}`"),
        }
    }
    let mut roots = rustls::RootCertStore::empty();
    for ca in &cas {
        for c in CertificateDer::pem_file_iter(ca)? {
            roots.add(c?)?;
        }
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let opts = Opts {
        target: target.context("--target ADDR")?,
        host,
        port,
        proxy,
        new_conn,
        conc,
        secs,
        label,
        tls: Arc::new(tls),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(opts))
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(o: &Opts) -> anyhow::Result<Sender> {
    let mut s = TcpStream::connect(&o.target).await?;
    s.set_nodelay(true)?;
    if o.proxy {
        support::connect_tunnel(&mut s, &format!("{}:{}", o.host, o.port)).await?;
    }
    let tls = tokio_rustls::TlsConnector::from(o.tls.clone())
        .connect(ServerName::try_from(o.host.clone())?, s)
        .await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(send)
}

async fn one(o: &Opts, send: &mut Sender) -> anyhow::Result<()> {
    let authority = if o.port == 443 {
        o.host.clone()
    } else {
        format!("{}:{}", o.host, o.port)
    };
    let mut req = hyper::Request::builder()
        .uri("/")
        .header("host", authority)
        .header("authorization", "Bearer agent-placeholder");
    if o.new_conn {
        req = req.header("connection", "close");
    }
    send.ready().await?;
    let resp = send.send_request(req.body(Empty::new())?).await?;
    if !resp.status().is_success() {
        bail!("status {}", resp.status());
    }
    resp.into_body().collect().await?;
    Ok(())
}

async fn worker(o: Opts, until: Instant) -> (Vec<u32>, u64) {
    let mut lat = Vec::with_capacity(1 << 16);
    let mut errors = 0u64;
    let mut conn: Option<Sender> = None;
    while Instant::now() < until {
        let t = Instant::now();
        let res = async {
            if o.new_conn || conn.is_none() {
                conn = Some(connect(&o).await?);
            }
            let send = conn.as_mut().context("no connection")?;
            one(&o, send).await
        }
        .await;
        match res {
            Ok(()) => lat.push(t.elapsed().as_micros() as u32),
            Err(_) => {
                errors += 1;
                conn = None;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    (lat, errors)
}

async fn run(o: Opts) -> anyhow::Result<()> {
    let start = Instant::now();
    let until = start + Duration::from_secs(o.secs);
    let tasks: Vec<_> = (0..o.conc)
        .map(|_| tokio::spawn(worker(o.clone(), until)))
        .collect();
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat[i] as f64 / 1000.0
    };
    println!(
        "{{\"label\":\"{}\",\"requests\":{},\"errors\":{},\"rps\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
        o.label,
        lat.len(),
        errors,
        lat.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}
