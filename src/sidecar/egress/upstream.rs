//! Connections to upstreams: resolution with the SSRF guard, TCP_NODELAY, verified TLS, an
//! optional upstream HTTP proxy (pipelock), and the keep-alive pool (hyper-util's client with
//! our connector).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ipnet::IpNet;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::EgressError;
use super::config::UpstreamProxy;
use super::routes::RouteTable;
use super::ssrf::{DestinationError, Resolver, resolve_checked};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why an upstream connection failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error(transparent)]
    Destination(#[from] DestinationError),
    #[error("cannot connect to {target}: {source}")]
    Connect { target: String, source: io::Error },
    #[error("TLS with {host} failed: {source}")]
    Tls { host: String, source: io::Error },
    #[error("upstream proxy: {0}")]
    Proxy(String),
    #[error("request URI has no host")]
    NoHost,
}

/// Build the upstream TLS client config: system roots (when asked) plus extra PEM roots.
pub(crate) fn tls_client_config(
    system_roots: bool,
    extra_pems: &[String],
) -> Result<Arc<ClientConfig>, EgressError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if system_roots {
        let found = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, "system roots loaded");
    }
    for pem in extra_pems {
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| EgressError::Tls(format!("extra CA: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| EgressError::Tls(format!("extra CA: {e}")))?;
            n += 1;
        }
        if n == 0 {
            return Err(EgressError::Tls(
                "an extra CA file holds no PEM certificate".into(),
            ));
        }
    }
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| EgressError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Settings shared by every connector generation.
#[derive(Debug)]
pub struct UpstreamSettings {
    pub(crate) resolver: Resolver,
    pub allow: Vec<IpNet>,
    pub tls: Arc<ClientConfig>,
    pub proxy: Option<UpstreamProxy>,
}

/// hyper-util connector: one per policy generation (it reads that generation's routes).
#[derive(Clone)]
pub(crate) struct Connector {
    settings: Arc<UpstreamSettings>,
    routes: Arc<RouteTable>,
}

pub(crate) type UpstreamClient = Client<Connector, Full<Bytes>>;

/// A pooled client for one policy generation.
pub(crate) fn client(settings: Arc<UpstreamSettings>, routes: Arc<RouteTable>) -> UpstreamClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .set_host(false)
        .http1_writev(false)
        .build(Connector { settings, routes })
}

impl Connector {
    fn route_allow(&self, host: &str) -> Vec<IpNet> {
        self.routes
            .lookup(host)
            .map(|r| r.ssrf_ip_allowlist.clone())
            .unwrap_or_default()
    }
}

/// Open a TCP connection to `host:port` (checked), or through the upstream proxy with CONNECT.
/// Returns the stream and whether it already is a tunnel to the destination.
pub(crate) async fn open_stream(
    settings: &UpstreamSettings,
    host: &str,
    port: u16,
    route_allow: &[IpNet],
) -> Result<TcpStream, UpstreamError> {
    let addrs =
        resolve_checked(&settings.resolver, host, port, &settings.allow, route_allow).await?;
    match &settings.proxy {
        None => connect_any(&addrs, host).await,
        Some(proxy) => {
            let target = match addrs.first() {
                Some(a) if a.port() != port => a.to_string(),
                _ => format_authority(host, port),
            };
            let mut s = connect_proxy(proxy).await?;
            proxy_connect(&mut s, &target).await?;
            Ok(s)
        }
    }
}

fn format_authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn connect_any(addrs: &[SocketAddr], host: &str) -> Result<TcpStream, UpstreamError> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
        }
    }
    Err(UpstreamError::Connect {
        target: host.to_string(),
        source: last,
    })
}

async fn connect_proxy(proxy: &UpstreamProxy) -> Result<TcpStream, UpstreamError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|e| UpstreamError::Proxy(format!("cannot resolve `{}`: {e}", proxy.host)))?
        .collect();
    connect_any(&addrs, &proxy.host).await
}

/// Send `CONNECT target` and read the proxy's answer (bounded).
async fn proxy_connect(s: &mut TcpStream, target: &str) -> Result<(), UpstreamError> {
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| UpstreamError::Proxy(e.to_string()))?;
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    // Byte by byte: nothing after the head may be consumed (it belongs to the tunnel).
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            return Err(UpstreamError::Proxy("CONNECT answer too long".into()));
        }
        let n = s
            .read(&mut byte)
            .await
            .map_err(|e| UpstreamError::Proxy(e.to_string()))?;
        if n == 0 {
            return Err(UpstreamError::Proxy("closed during CONNECT".into()));
        }
        head.push(byte[0]);
    }
    let status_ok = head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200");
    if !status_ok {
        let line =
            String::from_utf8_lossy(head.split(|b| *b == b'\r').next().unwrap_or(&[])).into_owned();
        return Err(UpstreamError::Proxy(format!(
            "CONNECT {target} refused: {line}"
        )));
    }
    Ok(())
}

async fn tls_connect(
    tls: Arc<ClientConfig>,
    host: &str,
    s: TcpStream,
) -> Result<TlsStream<TcpStream>, UpstreamError> {
    let name = match super::ssrf::parse_ip_literal(host) {
        Some(ip) => ServerName::IpAddress(ip.into()),
        None => ServerName::try_from(host.to_string()).map_err(|e| UpstreamError::Tls {
            host: host.into(),
            source: io::Error::other(e),
        })?,
    };
    tokio::time::timeout(CONNECT_TIMEOUT, TlsConnector::from(tls).connect(name, s))
        .await
        .map_err(|_| UpstreamError::Tls {
            host: host.into(),
            source: io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"),
        })?
        .map_err(|source| UpstreamError::Tls {
            host: host.into(),
            source,
        })
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<UpStream>;
    type Error = UpstreamError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri.host().ok_or(UpstreamError::NoHost)?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let https = uri.scheme_str() == Some("https");
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let allow = this.route_allow(&host);
            let settings = &this.settings;
            if !https && settings.proxy.is_some() {
                // Plain HTTP goes to the proxy in absolute form.
                resolve_checked(&settings.resolver, &host, port, &settings.allow, &allow).await?;
                let proxy = settings.proxy.as_ref().ok_or(UpstreamError::NoHost)?;
                let s = connect_proxy(proxy).await?;
                return Ok(TokioIo::new(UpStream::Plain(s, true)));
            }
            let s = open_stream(settings, &host, port, &allow).await?;
            if https {
                let tls = tls_connect(settings.tls.clone(), &host, s).await?;
                Ok(TokioIo::new(UpStream::Tls(Box::new(tls))))
            } else {
                Ok(TokioIo::new(UpStream::Plain(s, false)))
            }
        })
    }
}

/// An upstream connection: plain TCP (the flag: it goes to the upstream proxy in absolute
/// form) or TLS.
pub(crate) enum UpStream {
    Plain(TcpStream, bool),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for UpStream {
    fn connected(&self) -> Connected {
        match self {
            UpStream::Plain(_, proxied) => Connected::new().proxy(*proxied),
            UpStream::Tls(_) => Connected::new(),
        }
    }
}

impl AsyncRead for UpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s, _) => Pin::new(s).poll_read(cx, buf),
            UpStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpStream::Plain(s, _) => Pin::new(s).poll_write(cx, data),
            UpStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpStream::Plain(s, _) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            UpStream::Plain(s, _) => s.is_write_vectored(),
            UpStream::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s, _) => Pin::new(s).poll_flush(cx),
            UpStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s, _) => Pin::new(s).poll_shutdown(cx),
            UpStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Find our error inside a client error's source chain.
pub(crate) fn find_upstream_error<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a UpstreamError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(u) = err.downcast_ref::<UpstreamError>() {
            return Some(u);
        }
        cur = err.source();
    }
    None
}
