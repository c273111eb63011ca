//! The accept loop and request handling.
//!
//! Client side: hyper HTTP/1.1 with keep-alive and upgrades, over TCP (TCP_NODELAY) or a unix
//! socket. `CONNECT host:443` to an intercepted route is answered 200, then TLS is terminated
//! with a leaf from the bottle CA (the SNI must name the CONNECT host) and each request inside
//! is checked and forwarded through the pooled upstream client. Passthrough routes get a plain
//! tunnel after the allowlist and SSRF checks. `http://` proxy requests follow the same rules.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;

use super::audit::{Audit, Decision, log_path};
use super::ca::BottleCa;
use super::config::{EgressConfig, ListenAddr, parse_routes};
use super::inject::{inject_credential, strip_agent_credentials, strip_hop_by_hop};
use super::inspect::{collect_body, loggable, scan_body, scan_headers, scan_target};
use super::limits::{IdleIo, Limits};
use super::redact::{Decoder, Needles, RedactBody, mask_head, mask_headers};
use super::refuse::{Layer, REFUSAL_HEADER, Refusal};
use super::reload::{Policy, PolicyHandle, content_hash, read_routes_file, spawn_watcher};
use super::routes::{Route, RouteTable};
use super::smuggle::{Sniff, SniffIo};
use super::sni::read_client_hello;
use super::ssrf::{DestinationError, Resolver, resolve_checked};
use super::target::{check_proxy_target, split_host_port};
use super::upstream::{self, UpstreamError, UpstreamSettings, find_upstream_error, open_stream};
use super::{EgressError, routes::normalize_request_host};
use crate::scan::Scanner;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type RespBody = BoxBody<Bytes, BoxError>;

/// Looks a variable up in the daemon's environment (tests pass their own).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

struct Shared {
    policy: Arc<PolicyHandle>,
    ca: BottleCa,
    audit: Audit,
    scanner: Scanner,
    upstream: Arc<UpstreamSettings>,
    limits: Limits,
}

enum Listener {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        _socket: SocketFile,
    },
}

/// A bound, ready egress proxy.
pub struct EgressServer {
    listener: Listener,
    shared: Arc<Shared>,
    routes_path: PathBuf,
    routes_hash: u64,
    reload_interval: std::time::Duration,
    env: EnvLookup,
}

fn build_policy(
    text: &str,
    path: &std::path::Path,
    generation: u64,
    env: &EnvLookup,
    upstream: &Arc<UpstreamSettings>,
) -> Result<Policy, EgressError> {
    let raw = parse_routes(text).map_err(|message| EgressError::Routes {
        path: path.to_path_buf(),
        message,
    })?;
    let routes = RouteTable::build(raw, &|k| env(k)).map_err(|message| EgressError::Routes {
        path: path.to_path_buf(),
        message,
    })?;
    let routes = Arc::new(routes);
    Ok(Policy {
        generation,
        client: upstream::client(upstream.clone(), routes.clone()),
        routes,
    })
}

impl EgressServer {
    /// Load everything and bind the listener; token values come from the process environment.
    pub async fn bind(cfg: EgressConfig) -> Result<Self, EgressError> {
        Self::bind_with_env(cfg, Arc::new(|k| std::env::var(k).ok())).await
    }

    /// As [`EgressServer::bind`], reading token values through `env`.
    pub async fn bind_with_env(cfg: EgressConfig, env: EnvLookup) -> Result<Self, EgressError> {
        let ca = BottleCa::from_pem(&cfg.ca_cert_pem, &cfg.ca_key_pem)?;
        let tls = upstream::tls_client_config(cfg.system_roots, &cfg.extra_roots_pem)?;
        let upstream = Arc::new(UpstreamSettings {
            resolver: Resolver::new(&cfg.resolve),
            allow: cfg.allow_cidrs.clone(),
            tls,
            proxy: cfg.upstream_proxy.clone(),
        });
        let text = read_routes_file(&cfg.routes_path)?;
        let policy = build_policy(&text, &cfg.routes_path, 0, &env, &upstream)?;
        let audit = Audit::open(cfg.audit_log.as_deref())?;
        let listener =
            match &cfg.listen {
                ListenAddr::Tcp(a) => {
                    Listener::Tcp(TcpListener::bind(a).await.map_err(|source| {
                        EgressError::Listen {
                            addr: a.to_string(),
                            source,
                        }
                    })?)
                }
                ListenAddr::Unix(p) => {
                    if let Ok(meta) = std::fs::symlink_metadata(p) {
                        use std::os::unix::fs::FileTypeExt;
                        if meta.file_type().is_socket() {
                            let _ = std::fs::remove_file(p);
                        }
                    }
                    let l = UnixListener::bind(p).map_err(|source| EgressError::Listen {
                        addr: format!("unix:{}", p.display()),
                        source,
                    })?;
                    // The agent's relay runs as an unprivileged user in another container:
                    // the socket is its only door, so anyone who can see it may connect.
                    {
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o666))
                            .map_err(|source| EgressError::Listen {
                                addr: format!("unix:{}", p.display()),
                                source,
                            })?;
                    }
                    Listener::Unix {
                        listener: l,
                        _socket: SocketFile(p.clone()),
                    }
                }
            };
        let shared = Arc::new(Shared {
            policy: Arc::new(PolicyHandle::new(policy)),
            ca,
            audit,
            scanner: Scanner::new(),
            upstream,
            limits: cfg.limits,
        });
        Ok(EgressServer {
            listener,
            shared,
            routes_path: cfg.routes_path,
            routes_hash: content_hash(&text),
            reload_interval: cfg.reload_interval,
            env,
        })
    }

    /// The TCP address bound (None for a unix socket).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.listener {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix { .. } => None,
        }
    }

    /// Serve until the task is dropped. Starts the routes watcher.
    pub async fn run(self) -> Result<(), EgressError> {
        let EgressServer {
            listener,
            shared,
            routes_path,
            routes_hash,
            reload_interval,
            env,
        } = self;
        {
            let upstream = shared.upstream.clone();
            let path = routes_path.clone();
            spawn_watcher(
                routes_path,
                reload_interval,
                routes_hash,
                shared.policy.clone(),
                move |text, generation| build_policy(text, &path, generation, &env, &upstream),
            );
        }
        let permits = Arc::new(Semaphore::new(shared.limits.max_connections));
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return Ok(());
            };
            match &listener {
                Listener::Tcp(l) => match l.accept().await {
                    Ok((s, _)) => {
                        let _ = s.set_nodelay(true);
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            serve_client(shared, s).await;
                            drop(permit);
                        });
                    }
                    Err(e) => accept_failed(e).await,
                },
                Listener::Unix { listener: l, .. } => match l.accept().await {
                    Ok((s, _)) => {
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            serve_client(shared, s).await;
                            drop(permit);
                        });
                    }
                    Err(e) => accept_failed(e).await,
                },
            }
        }
    }
}

/// Removes the unix socket file when the server goes away.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn accept_failed(e: std::io::Error) {
    // Out of descriptors and the like: back off instead of spinning.
    tracing::warn!("accept failed: {e}");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

fn server_builder(limits: &Limits) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.hyper_buf_size())
        .max_headers(limits.max_headers)
        .keep_alive(true)
        // One flat buffer per write: with TLS each vectored slice would cost its own record.
        .writev(false);
    b
}

/// What the requests on one client connection are aimed at.
#[derive(Clone)]
enum Origin {
    /// The proxy listener itself: absolute-form requests and CONNECT.
    Proxy,
    /// Inside an intercepted CONNECT tunnel to this host.
    Tunnel(Arc<str>),
}

async fn serve_client<S>(shared: Arc<Shared>, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_http(shared, stream, Origin::Proxy).await;
}

/// Boxed with a named type: the tunnel's handler reaches back here (recursion).
fn serve_http<S>(
    shared: Arc<Shared>,
    stream: S,
    origin: Origin,
) -> Pin<Box<dyn Future<Output = ()> + Send>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(async move {
        let sniff = Arc::new(Sniff::default());
        {
            // Heads hyper could not parse never reach `dispatch`: audit them here.
            let shared = shared.clone();
            let host: Arc<str> = match &origin {
                Origin::Proxy => Arc::from(""),
                Origin::Tunnel(h) => h.clone(),
            };
            sniff.on_refusal(move |r| shared.deny_unparsed(&host, r));
        }
        let limits = shared.limits;
        let io = TokioIo::new(SniffIo::new(
            IdleIo::new(stream, limits.idle_timeout),
            sniff.clone(),
        ));
        let svc = service_fn(move |req| {
            let shared = shared.clone();
            let sniff = sniff.clone();
            let origin = origin.clone();
            async move { Ok::<_, Infallible>(dispatch(shared, sniff, origin, req).await) }
        });
        if let Err(e) = server_builder(&limits)
            .serve_connection(io, svc)
            .with_upgrades()
            .await
        {
            tracing::debug!("client connection ended: {e}");
        }
    })
}

fn refusal_response(r: &Refusal, close: bool) -> Response<RespBody> {
    r.response::<Full<Bytes>>(close)
        .map(|b| b.map_err(|never| match never {}).boxed())
}

fn empty() -> RespBody {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

impl Shared {
    /// A refusal of a request whose head could not be parsed (no method, no path).
    fn deny_unparsed(&self, host: &str, r: &Refusal) {
        self.audit.record(&Decision {
            host,
            method: "",
            path: "",
            allowed: false,
            layer: r.layer.as_str(),
            rule: &r.rule,
            status: r.status.as_u16(),
            injected: None,
        });
    }

    fn deny(&self, host: &str, method: &Method, path: &str, r: &Refusal) {
        // Refused before (or instead of) the secret scan: a credential may hide in either.
        self.audit.record(&Decision {
            host: loggable(&self.scanner, host),
            method: loggable(&self.scanner, method.as_str()),
            path: loggable(&self.scanner, path),
            allowed: false,
            layer: r.layer.as_str(),
            rule: &r.rule,
            status: r.status.as_u16(),
            injected: None,
        });
    }
}

async fn dispatch(
    shared: Arc<Shared>,
    sniff: Arc<Sniff>,
    origin: Origin,
    req: Request<Incoming>,
) -> Response<RespBody> {
    if let Err(rule) = sniff.check(req.headers()) {
        let r = Refusal::new(
            StatusCode::BAD_REQUEST,
            Layer::Protocol,
            rule,
            "ambiguous request framing",
        );
        let host = req.uri().host().unwrap_or("");
        shared.deny(host, req.method(), log_path(req.uri().path()), &r);
        return refusal_response(&r, true);
    }
    if let Err(rule) = check_proxy_target(req.method(), req.uri(), req.headers()) {
        let r = Refusal::new(
            StatusCode::BAD_REQUEST,
            Layer::Protocol,
            rule,
            "write the target as `http://host[:port]/path` or CONNECT `host:port`, without userinfo or a body",
        );
        shared.deny("", req.method(), log_path(req.uri().path()), &r);
        return refusal_response(&r, true);
    }
    match origin {
        Origin::Proxy if req.method() == Method::CONNECT => handle_connect(shared, req).await,
        Origin::Proxy => {
            let scheme = req.uri().scheme_str().map(str::to_ascii_lowercase);
            match scheme.as_deref() {
                Some("http") => handle_request(shared, req, Target::Plain).await,
                Some("https") => handle_request(shared, req, Target::AbsoluteHttps).await,
                _ => {
                    let r = Refusal::new(
                        StatusCode::BAD_REQUEST,
                        Layer::Protocol,
                        "not-a-proxy-request",
                        "use this address only as an HTTP(S) proxy",
                    );
                    shared.deny("", req.method(), log_path(req.uri().path()), &r);
                    refusal_response(&r, true)
                }
            }
        }
        Origin::Tunnel(host) => {
            if req.method() == Method::CONNECT {
                let r = Refusal::forbidden(Layer::Protocol, "connect-inside-tunnel", "");
                shared.deny(&host, req.method(), "", &r);
                return refusal_response(&r, true);
            }
            handle_request(shared, req, Target::Tunnel(host)).await
        }
    }
}

/// A refused CONNECT also closes the connection: a client may already have sent tunnel bytes
/// (its ClientHello) that must not be read as the next request.
async fn handle_connect(shared: Arc<Shared>, req: Request<Incoming>) -> Response<RespBody> {
    let method = Method::CONNECT;
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let Some((host_raw, port)) = split_host_port(&authority) else {
        let r = Refusal::new(
            StatusCode::BAD_REQUEST,
            Layer::Protocol,
            "bad-connect-target",
            "CONNECT needs host:port",
        );
        shared.deny("", &method, "", &r);
        return refusal_response(&r, true);
    };
    let policy = shared.policy.current();
    let Some(route) = policy.routes.lookup(host_raw).cloned() else {
        let r = Refusal::forbidden(
            Layer::Allowlist,
            "host-not-in-routes",
            format!("no route for `{host_raw}`"),
        );
        shared.deny(host_raw, &method, "", &r);
        return refusal_response(&r, true);
    };
    let host = route.host.clone();
    if port != Some(443) {
        let r = Refusal::forbidden(
            Layer::Allowlist,
            "port-not-allowed",
            format!("only port 443 is routed for `{host}`"),
        );
        shared.deny(&host, &method, "", &r);
        return refusal_response(&r, true);
    }
    let upstream = shared.upstream.clone();
    if route.tunnels() {
        let stream = match open_stream(&upstream, &host, 443, &route.ssrf_ip_allowlist).await {
            Ok(s) => s,
            Err(e) => {
                let r = upstream_refusal(&e);
                shared.deny(&host, &method, "", &r);
                return refusal_response(&r, true);
            }
        };
        allow_connect(&shared, &host, "tls-passthrough");
        tokio::spawn(async move {
            if let Ok(up) = hyper::upgrade::on(req).await {
                let mut client = TokioIo::new(up);
                // Not intercepted, but the ClientHello must still name the CONNECT host.
                let timeout = shared.limits.handshake_timeout;
                let refusal = match read_client_hello(&mut client, timeout).await {
                    Ok(hello) => match passthrough_sni_refusal(hello.server_name.as_deref(), &host)
                    {
                        Some(r) => r,
                        None => {
                            let mut stream = stream;
                            if stream.write_all(&hello.raw).await.is_ok() {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut stream).await;
                            }
                            return;
                        }
                    },
                    Err(e) => Refusal::new(
                        StatusCode::BAD_REQUEST,
                        Layer::Protocol,
                        "not-tls",
                        e.to_string(),
                    ),
                };
                shared.deny(&host, &Method::CONNECT, "", &refusal);
            }
        });
        return Response::new(empty());
    }
    // Intercepted: check the destination now so a refused one never sees a TLS handshake.
    if let Err(e) = resolve_checked(
        &upstream.resolver,
        &host,
        443,
        &upstream.allow,
        &route.ssrf_ip_allowlist,
    )
    .await
    {
        let r = destination_refusal(&e);
        shared.deny(&host, &method, "", &r);
        return refusal_response(&r, true);
    }
    allow_connect(&shared, &host, "intercept");
    // The tunnel keeps the host as the agent wrote it: only an exact match gets the credential.
    let tunnel_host: Arc<str> = Arc::from(host_raw);
    tokio::spawn(async move {
        if let Ok(up) = hyper::upgrade::on(req).await {
            intercept(shared, TokioIo::new(up), tunnel_host, host).await;
        }
    });
    Response::new(empty())
}

/// Why a passthrough tunnel's ClientHello may not go on to `host`, if it may not.
fn passthrough_sni_refusal(sni: Option<&str>, host: &str) -> Option<Refusal> {
    match sni {
        Some(sni) if !sni.eq_ignore_ascii_case(host) => Some(Refusal::forbidden(
            Layer::HostMismatch,
            "sni-mismatch",
            format!("SNI `{sni}` is not the CONNECT host"),
        )),
        // Clients send no SNI for an IP literal; for a name it must be there.
        None if host.parse::<std::net::IpAddr>().is_err() => Some(Refusal::forbidden(
            Layer::HostMismatch,
            "sni-missing",
            "a passthrough tunnel must name its host in the TLS ClientHello",
        )),
        _ => None,
    }
}

fn allow_connect(shared: &Shared, host: &str, rule: &str) {
    shared.audit.record(&Decision {
        host,
        method: "CONNECT",
        path: "",
        allowed: true,
        layer: "allowlist",
        rule,
        status: 200,
        injected: None,
    });
}

async fn intercept<S>(shared: Arc<Shared>, io: S, tunnel_host: Arc<str>, host: String)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = shared.limits.handshake_timeout;
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    // A tunnel that never becomes TLS is a decision too: audit it.
    let failed = |rule: &str, detail: String| {
        let r = Refusal::new(StatusCode::BAD_REQUEST, Layer::Protocol, rule, detail);
        shared.deny(&host, &Method::CONNECT, "", &r);
    };
    let start = match tokio::time::timeout(timeout, acceptor).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return failed("not-tls", e.to_string()),
        Err(_) => return failed("tls-handshake-timeout", String::new()),
    };
    if let Some(sni) = start.client_hello().server_name() {
        if !sni.eq_ignore_ascii_case(&host) {
            let r = Refusal::forbidden(
                Layer::HostMismatch,
                "sni-mismatch",
                format!("SNI `{sni}` is not the CONNECT host"),
            );
            shared.deny(&host, &Method::CONNECT, "", &r);
            return;
        }
    }
    let config = match shared.ca.server_config(&host) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("cannot mint a leaf for {host}: {e}");
            return;
        }
    };
    let tls = match tokio::time::timeout(timeout, start.into_stream(config)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return failed("tls-handshake-failed", e.to_string()),
        Err(_) => return failed("tls-handshake-timeout", String::new()),
    };
    serve_http(shared, tls, Origin::Tunnel(tunnel_host)).await;
}

#[derive(Clone)]
enum Target {
    /// `GET http://host/…` on the proxy listener.
    Plain,
    /// `GET https://host/…` on the proxy listener (the proxy does the TLS).
    AbsoluteHttps,
    /// Origin-form request inside an intercepted tunnel.
    Tunnel(Arc<str>),
}

fn upstream_refusal(e: &UpstreamError) -> Refusal {
    match e {
        UpstreamError::Destination(d) => destination_refusal(d),
        other => Refusal::new(
            StatusCode::BAD_GATEWAY,
            Layer::Upstream,
            "upstream-unreachable",
            other.to_string(),
        ),
    }
}

fn destination_refusal(e: &DestinationError) -> Refusal {
    match e {
        DestinationError::Ssrf(s) => Refusal::forbidden(
            Layer::Ssrf,
            format!("destination-{}", s.class),
            s.to_string(),
        ),
        DestinationError::Resolve(r) => Refusal::new(
            StatusCode::BAD_GATEWAY,
            Layer::Upstream,
            "dns-failed",
            r.to_string(),
        ),
    }
}

fn is_websocket(req: &Request<Incoming>) -> bool {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let conn = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    upgrade && conn && req.method() == Method::GET
}

async fn handle_request(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
    target: Target,
) -> Response<RespBody> {
    let method = req.method().clone();
    let full_path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let path_only = log_path(&full_path).to_string();

    // 1. Which host, and is it consistent with how the agent reached us?
    let (host_raw, scheme, default_port) = match &target {
        Target::Tunnel(t) => (t.to_string(), "https", 443u16),
        Target::Plain | Target::AbsoluteHttps => {
            let https = matches!(target, Target::AbsoluteHttps);
            let Some(h) = req.uri().host() else {
                let r = Refusal::new(StatusCode::BAD_REQUEST, Layer::Protocol, "no-host", "");
                shared.deny("", &method, &path_only, &r);
                return refusal_response(&r, true);
            };
            let port = req.uri().port_u16();
            let default = if https { 443 } else { 80 };
            if port.is_some_and(|p| p != default) {
                let r = Refusal::forbidden(
                    Layer::Allowlist,
                    "port-not-allowed",
                    format!("only port {default} is routed"),
                );
                shared.deny(h, &method, &path_only, &r);
                return refusal_response(&r, false);
            }
            (h.to_string(), if https { "https" } else { "http" }, default)
        }
    };
    let policy = shared.policy.current();
    let Some(route) = policy.routes.lookup(&host_raw).cloned() else {
        let r = Refusal::forbidden(
            Layer::Allowlist,
            "host-not-in-routes",
            format!("no route for `{host_raw}`"),
        );
        shared.deny(&host_raw, &method, &path_only, &r);
        return refusal_response(&r, false);
    };
    let host = route.host.as_str();
    if let Err(r) = check_host_consistency(&req, host, default_port, &target) {
        shared.deny(host, &method, &path_only, &r);
        return refusal_response(&r, true);
    }
    if !matches!(target, Target::Tunnel(_)) && route.tunnels() && scheme == "https" {
        let r = Refusal::forbidden(
            Layer::Allowlist,
            "passthrough-route",
            "this host is tunnelled; use CONNECT",
        );
        shared.deny(host, &method, &path_only, &r);
        return refusal_response(&r, false);
    }
    let exact_host = host_raw.trim_start_matches('[').trim_end_matches(']') == route.host
        && req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .and_then(split_host_port)
            .is_none_or(|(h, _)| h.trim_start_matches('[').trim_end_matches(']') == route.host);
    // 2. Path allowlist.
    if !route.path_allowed(req.uri().path()) {
        let r = Refusal::forbidden(
            Layer::Path,
            "path-not-allowed",
            format!("`{}` is outside the allowlist", path_only),
        );
        shared.deny(host, &method, &path_only, &r);
        return refusal_response(&r, false);
    }
    // 3. Headers: drop what must not travel, then scan what is left (before injection).
    let websocket = is_websocket(&req);
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    strip_agent_credentials(&mut parts.headers, &route, websocket);
    // The method travels too: an extension method is any token the agent likes.
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::TRACE,
        Method::CONNECT,
    ];
    let in_request_line = scan_target(&shared.scanner, &full_path).or_else(|| {
        (!STANDARD.contains(&method))
            .then(|| shared.scanner.scan(method.as_str().as_bytes()))
            .flatten()
    });
    if let Some(f) = in_request_line {
        let r = Refusal::forbidden(
            Layer::SecretScan,
            f.rule,
            format!("{} in the request line", f.description),
        );
        shared.deny(host, &method, "[redacted]", &r);
        return refusal_response(&r, false);
    }
    if let Some(f) = scan_headers(&shared.scanner, &parts.headers) {
        let r = Refusal::forbidden(
            Layer::SecretScan,
            f.rule,
            format!("{} in a request header", f.description),
        );
        shared.deny(host, &method, &path_only, &r);
        return refusal_response(&r, false);
    }
    // 4. Body: bounded read and scan.
    let body = if websocket {
        Bytes::new()
    } else {
        use hyper::body::Body;
        if body.is_end_stream() {
            Bytes::new()
        } else {
            match collect_body(body, shared.limits.max_body_bytes).await {
                Ok(b) => b,
                Err(r) => {
                    shared.deny(host, &method, &path_only, &r);
                    return refusal_response(&r, true);
                }
            }
        }
    };
    if let Err(r) = scan_body_off_loop(&shared, &parts.headers, &body).await {
        shared.deny(host, &method, &path_only, &r);
        return refusal_response(&r, false);
    }
    // The body is buffered: the upstream gets the length egress read, as hyper writes it,
    // never the agent's own spelling of it.
    parts.headers.remove(header::CONTENT_LENGTH);
    // 5. Inject (only on an exact host spelling) and forward.
    let injected = if exact_host {
        inject_credential(&mut parts.headers, &route)
    } else {
        None
    };
    if injected.is_some() {
        // Uncompressed answers, so an echoed credential can be masked (see `redact`).
        parts.headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    let authority = match &target {
        Target::Tunnel(_) => host.to_string(),
        _ => req_authority(host, None),
    };
    if !parts.headers.contains_key(header::HOST) || !matches!(target, Target::Tunnel(_)) {
        if let Ok(v) = HeaderValue::from_str(&authority) {
            parts.headers.insert(header::HOST, v);
        }
    }
    let uri = match Uri::builder()
        .scheme(scheme)
        .authority(authority.as_str())
        .path_and_query(full_path.as_str())
        .build()
    {
        Ok(u) => u,
        Err(_) => {
            let r = Refusal::new(
                StatusCode::BAD_REQUEST,
                Layer::Protocol,
                "bad-request-target",
                "",
            );
            shared.deny(host, &method, &path_only, &r);
            return refusal_response(&r, true);
        }
    };
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    let up_req = Request::from_parts(parts, Full::new(body));
    let resp = match policy.client.request(up_req).await {
        Ok(r) => r,
        Err(e) => {
            let r = match find_upstream_error(&e) {
                Some(u) => upstream_refusal(u),
                None => Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    Layer::Upstream,
                    "upstream-failed",
                    e.to_string(),
                ),
            };
            shared.deny(host, &method, &path_only, &r);
            return refusal_response(&r, false);
        }
    };
    let rule = match (route.auth.is_some(), injected.is_some()) {
        (true, true) => "route-auth",
        (true, false) => "route-auth-withheld-inexact-host",
        _ => "route",
    };
    let status = resp.status().as_u16();
    let resp = match finish_response(resp, client_upgrade, route.clone()) {
        Ok(resp) => resp,
        Err(r) => {
            shared.deny(host, &method, &path_only, &r);
            return refusal_response(&r, true);
        }
    };
    shared.audit.record(&Decision {
        host,
        method: method.as_str(),
        path: &path_only,
        allowed: true,
        layer: "egress",
        rule,
        status,
        injected,
    });
    resp
}

/// Bodies above this are scanned on the blocking pool: decoding and scanning megabytes on the
/// event loop would stall every other connection of the daemon.
const SCAN_ON_LOOP_MAX: usize = 64 * 1024;

async fn scan_body_off_loop(
    shared: &Arc<Shared>,
    headers: &http::HeaderMap,
    body: &Bytes,
) -> Result<(), Refusal> {
    let max = shared.limits.max_body_bytes;
    if body.len() <= SCAN_ON_LOOP_MAX {
        return scan_body(&shared.scanner, headers, body, max);
    }
    let (shared, headers, body) = (shared.clone(), headers.clone(), body.clone());
    tokio::task::spawn_blocking(move || scan_body(&shared.scanner, &headers, &body, max))
        .await
        // A scan that did not finish never lets the body through.
        .unwrap_or_else(|_| {
            Err(Refusal::forbidden(
                Layer::SecretScan,
                "scan-failed",
                "the body could not be scanned",
            ))
        })
}

fn req_authority(host: &str, port: Option<u16>) -> String {
    let h = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    match port {
        Some(p) => format!("{h}:{p}"),
        None => h,
    }
}

/// The Host header (and an absolute-form target inside a tunnel) must name the route host.
fn check_host_consistency(
    req: &Request<Incoming>,
    host: &str,
    default_port: u16,
    target: &Target,
) -> Result<(), Refusal> {
    let mismatch = |what: &str| {
        Refusal::forbidden(
            Layer::HostMismatch,
            "host-header-mismatch",
            format!("{what} does not name `{host}`"),
        )
    };
    let same = |authority: &str| -> bool {
        match split_host_port(authority) {
            Some((h, port)) => {
                normalize_request_host(h).is_some_and(|n| n == host)
                    && port.is_none_or(|p| p == default_port)
            }
            None => false,
        }
    };
    let mut hosts = req.headers().get_all(header::HOST).iter();
    if let Some(v) = hosts.next() {
        if hosts.next().is_some() {
            return Err(mismatch("a second Host header"));
        }
        let ok = v.to_str().ok().is_some_and(same);
        // For absolute-form proxy requests the URI wins and Host is rewritten; a different
        // Host there is still suspicious, so refuse it too.
        if !ok {
            return Err(mismatch("the Host header"));
        }
    }
    if let Target::Tunnel(_) = target {
        if let Some(a) = req.uri().authority() {
            if !same(a.as_str()) {
                return Err(mismatch("the request target"));
            }
        }
    }
    Ok(())
}

fn finish_response(
    resp: Response<Incoming>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    route: Arc<Route>,
) -> Result<Response<RespBody>, Refusal> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_up) = client_upgrade {
            let (mut parts, body) = resp.into_parts();
            let up_resp = Response::from_parts(parts.clone(), body);
            tokio::spawn(async move {
                let (c, u) = tokio::join!(client_up, hyper::upgrade::on(up_resp));
                if let (Ok(c), Ok(u)) = (c, u) {
                    let mut c = TokioIo::new(c);
                    let mut u = TokioIo::new(u);
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                }
            });
            parts.extensions = http::Extensions::new();
            parts.headers.remove(REFUSAL_HEADER);
            if let Some(auth) = &route.auth {
                let needles = Needles::for_token(auth.value.expose().as_bytes());
                mask_headers(&mut parts.headers, &needles);
            }
            return Ok(Response::from_parts(parts, empty()));
        }
        return Err(Refusal::new(
            StatusCode::BAD_GATEWAY,
            Layer::Upstream,
            "unexpected-upgrade",
            "",
        ));
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    parts.headers.remove(REFUSAL_HEADER);
    let body = match &route.auth {
        Some(auth) => {
            let needles = Arc::new(Needles::for_token(auth.value.expose().as_bytes()));
            mask_head(&mut parts, &needles);
            // Asked for identity; an encoded answer is decoded so the mask can apply.
            let decoder = match Decoder::for_response(&mut parts.headers) {
                Ok(d) => d,
                Err(encoding) => {
                    return Err(Refusal::new(
                        StatusCode::BAD_GATEWAY,
                        Layer::Upstream,
                        "uninspectable-response-encoding",
                        format!("the upstream answered with content-encoding `{encoding}`"),
                    ));
                }
            };
            RedactBody::new(body, needles).decoding(decoder).boxed()
        }
        None => body.map_err(|e| Box::new(e) as BoxError).boxed(),
    };
    Ok(Response::from_parts(parts, body))
}
