//! The accept loop and the transport of each request.
//!
//! Every head goes to [`decide`] (the policy, pure); what needs I/O stays here: the body read
//! and scan, the SSRF resolve and connect, TLS, the upstream and its answer. [`Shared::refuse`]
//! is the one writer of a refusal's audit line and response.
//!
//! Client side: hyper HTTP/1.1 with keep-alive and upgrades, over TCP (TCP_NODELAY) or a unix
//! socket. `CONNECT host:443` to an intercepted route is answered 200, then TLS is terminated
//! with a leaf from the bottle CA (the SNI must name the CONNECT host) and each request inside
//! is checked and forwarded through the pooled upstream client. Passthrough routes get a plain
//! tunnel after the allowlist and SSRF checks. `http://` proxy requests follow the same rules.
//! A connection egress ends is half-closed and drained briefly ([`super::linger`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;

use super::EgressError;
use super::audit::{Audit, Decision};
use super::ca::BottleCa;
use super::config::{EgressConfig, ListenAddr, parse_grants, parse_routes};
use super::decide::{Connect, Denial, Forward, Head, Origin, Verdict, decide};
use super::inject::strip_hop_by_hop;
use super::inspect::{collect_body, loggable, scan_body};
use super::limits::{IdleIo, Limits};
use super::linger::{self, LingerIo};
use super::redact::{Decoder, Needles, RedactBody, mask_head, mask_headers};
use super::refuse::{Layer, REFUSAL_HEADER, Refusal};
use super::reload::{Policy, PolicyHandle, read_policy_files, spawn_watcher};
use super::routes::{OnceLedger, Route, RouteTable};
use super::smuggle::{Sniff, SniffIo};
use super::sni::read_client_hello;
use super::ssrf::{DestinationError, Resolver, resolve_checked};
use super::upstream::{self, UpstreamError, UpstreamSettings, find_upstream_error, open_stream};
use crate::scan::Scanner;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type RespBody = BoxBody<Bytes, BoxError>;

/// Looks a variable up in the daemon's environment (tests pass their own).
pub(crate) type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

struct Shared {
    policy: Arc<PolicyHandle>,
    /// Where a used `once` grant is marked for supervise.
    once_used_dir: Option<PathBuf>,
    ca: BottleCa,
    audit: Audit,
    scanner: Scanner,
    upstream: Arc<UpstreamSettings>,
    limits: Limits,
    /// Slots for client connections draining after egress is done with them.
    lingering: Arc<Semaphore>,
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
    grants_path: Option<PathBuf>,
    routes_hash: u64,
    reload_interval: std::time::Duration,
    env: EnvLookup,
}

/// Where a policy comes from: the two files, and the ledger every generation shares.
struct PolicySource {
    routes: PathBuf,
    grants: Option<PathBuf>,
    once: Arc<OnceLedger>,
}

fn build_policy(
    text: &str,
    grants_text: &str,
    src: &PolicySource,
    generation: u64,
    env: &EnvLookup,
    upstream: &Arc<UpstreamSettings>,
) -> Result<Policy, EgressError> {
    let raw = parse_routes(text).map_err(|message| EgressError::Routes {
        path: src.routes.clone(),
        message,
    })?;
    let grants_err = |message| EgressError::Routes {
        path: src.grants.clone().unwrap_or_default(),
        message,
    };
    let grants = parse_grants(grants_text).map_err(grants_err)?;
    let routes = RouteTable::build_with_grants(raw, grants, &|k| env(k), src.once.clone())
        .map_err(|message| EgressError::Routes {
            path: src.routes.clone(),
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
        let (text, grants_text, routes_hash) =
            read_policy_files(&cfg.routes_path, cfg.grants_path.as_deref())?;
        let src = PolicySource {
            routes: cfg.routes_path.clone(),
            grants: cfg.grants_path.clone(),
            once: Arc::default(),
        };
        let policy = build_policy(&text, &grants_text, &src, 0, &env, &upstream)?;
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
            once_used_dir: cfg.once_used_dir.clone(),
            ca,
            audit,
            scanner: Scanner::new(),
            upstream,
            limits: cfg.limits,
            lingering: linger::slots(),
        });
        Ok(EgressServer {
            listener,
            shared,
            routes_path: cfg.routes_path,
            grants_path: cfg.grants_path,
            routes_hash,
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
            grants_path,
            routes_hash,
            reload_interval,
            env,
        } = self;
        {
            let upstream = shared.upstream.clone();
            let src = PolicySource {
                routes: routes_path.clone(),
                grants: grants_path.clone(),
                once: shared.policy.current().routes.once.clone(),
            };
            spawn_watcher(
                routes_path,
                grants_path,
                reload_interval,
                routes_hash,
                shared.policy.clone(),
                move |text, grants, generation| {
                    build_policy(text, grants, &src, generation, &env, &upstream)
                },
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

async fn serve_client<S>(shared: Arc<Shared>, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Whatever ends the connection (a refusal that closes it, a tunnel's end, a timeout), the
    // client gets to read the last answer before the socket closes.
    let stream = LingerIo::new(stream, shared.lingering.clone());
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
            sniff.on_refusal(move |r| {
                shared.record_denial(&Denial::new(r.clone(), true, &*host, "", ""))
            });
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

fn empty() -> RespBody {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

impl Shared {
    /// The one writer of a refusal: its audit line, then the response the agent reads.
    fn refuse(&self, d: &Denial) -> Response<RespBody> {
        self.record_denial(d);
        d.refusal
            .response::<Full<Bytes>>(d.close)
            .map(|b| b.map_err(|never| match never {}).boxed())
    }

    /// The audit line of a refusal. Called alone only where no HTTP response can follow (a
    /// head refused below hyper, a tunnel that never became TLS). The host, method and path
    /// were logged before (or instead of) the secret scan: a credential may hide in any.
    fn record_denial(&self, d: &Denial) {
        self.audit.record(&Decision {
            host: loggable(&self.scanner, &d.host).into(),
            method: loggable(&self.scanner, &d.method).into(),
            path: loggable(&self.scanner, &d.path).into(),
            allowed: false,
            layer: d.refusal.layer.as_str().into(),
            rule: d.refusal.rule.as_str().into(),
            status: d.refusal.status.as_u16(),
            ..Decision::default()
        });
    }

    fn record_allowed(&self, host: &str, method: &str, path: &str, rule: &str, status: u16) {
        self.record_allowed_with(host, method, path, "allowlist", rule, status, None);
    }

    #[allow(clippy::too_many_arguments)]
    fn record_allowed_with(
        &self,
        host: &str,
        method: &str,
        path: &str,
        layer: &str,
        rule: &str,
        status: u16,
        injected: Option<&str>,
    ) {
        self.audit.record(&Decision {
            host: host.into(),
            method: method.into(),
            path: path.into(),
            allowed: true,
            layer: layer.into(),
            rule: rule.into(),
            status,
            injected: injected.map(Into::into),
            time: None,
        });
    }
}

async fn dispatch(
    shared: Arc<Shared>,
    sniff: Arc<Sniff>,
    origin: Origin,
    req: Request<Incoming>,
) -> Response<RespBody> {
    let framing = sniff.check(req.headers());
    let (parts, body) = req.into_parts();
    // One policy generation for the whole request: the decision and the upstream pool.
    let policy = shared.policy.current();
    let head = Head {
        parts,
        origin,
        framing,
    };
    match decide(&policy.routes, &shared.scanner, head) {
        Verdict::Deny(d) => shared.refuse(&d),
        Verdict::Connect(c) => handle_connect(shared, *c).await,
        Verdict::Forward(f) => forward(shared, policy, *f, body).await,
    }
}

/// Tunnel an allowed CONNECT: passthrough routes after the SSRF check and an SNI check,
/// intercepted routes after the SSRF check, through the bottle CA.
async fn handle_connect(shared: Arc<Shared>, c: Connect) -> Response<RespBody> {
    let Connect {
        parts,
        route,
        host_raw,
    } = c;
    let host = route.host.clone();
    let upgrade = hyper::upgrade::on(Request::from_parts(parts, ()));
    // A refused CONNECT closes the connection (see `decide`).
    let refused = |r: Refusal| Denial::new(r, true, host.as_str(), "CONNECT", "");
    let upstream = shared.upstream.clone();
    if route.tunnels() {
        let stream = match open_stream(&upstream, &host, 443, &route.ssrf_ip_allowlist).await {
            Ok(s) => s,
            Err(e) => return shared.refuse(&refused(upstream_refusal(&e))),
        };
        shared.record_allowed(&host, "CONNECT", "", "tls-passthrough", 200);
        let refusal_host = host.clone();
        tokio::spawn(async move {
            let Ok(up) = upgrade.await else {
                return;
            };
            let mut client = TokioIo::new(up);
            // Not intercepted, but the ClientHello must still name the CONNECT host.
            let timeout = shared.limits.handshake_timeout;
            let refusal = match read_client_hello(&mut client, timeout).await {
                Ok(hello) => match passthrough_sni_refusal(hello.server_name.as_deref(), &host) {
                    Some(r) => r,
                    None => {
                        let mut stream = stream;
                        if stream.write_all(&hello.raw).await.is_ok() {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut stream).await;
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
            shared.record_denial(&Denial::new(refusal, true, refusal_host, "CONNECT", ""));
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
        return shared.refuse(&refused(destination_refusal(&e)));
    }
    shared.record_allowed(&host, "CONNECT", "", "intercept", 200);
    // The tunnel keeps the host as the agent wrote it: only an exact match gets the credential.
    let tunnel_host: Arc<str> = Arc::from(host_raw);
    tokio::spawn(async move {
        if let Ok(up) = upgrade.await {
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

async fn intercept<S>(shared: Arc<Shared>, io: S, tunnel_host: Arc<str>, host: String)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = shared.limits.handshake_timeout;
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    // A tunnel that never becomes TLS is a decision too: audit it.
    let refused = |r: Refusal| shared.record_denial(&Denial::new(r, true, &host, "CONNECT", ""));
    let failed = |rule: &str, detail: String| {
        refused(Refusal::new(
            StatusCode::BAD_REQUEST,
            Layer::Protocol,
            rule,
            detail,
        ))
    };
    let start = match tokio::time::timeout(timeout, acceptor).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return failed("not-tls", e.to_string()),
        Err(_) => return failed("tls-handshake-timeout", String::new()),
    };
    if let Some(sni) = start.client_hello().server_name() {
        if !sni.eq_ignore_ascii_case(&host) {
            return refused(Refusal::forbidden(
                Layer::HostMismatch,
                "sni-mismatch",
                format!("SNI `{sni}` is not the CONNECT host"),
            ));
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

/// Tell supervise a `once` grant was used: an empty file named by its id. Best effort: the
/// grant is already claimed in memory, so a failed mark only delays its retirement.
fn mark_once_used(dir: &std::path::Path, id: &str) {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return;
    }
    let _ = std::fs::create_dir_all(dir);
    if let Err(e) = std::fs::write(dir.join(id), b"") {
        tracing::warn!("cannot mark once grant {id} as used: {e}");
    }
}

/// The transport of an allowed head: read and scan the body, forward, relay the answer.
async fn forward(
    shared: Arc<Shared>,
    policy: Arc<Policy>,
    f: Forward,
    body: Incoming,
) -> Response<RespBody> {
    let Forward {
        mut parts,
        route,
        websocket,
        injected,
        rule,
        grant,
        host,
        method,
        path,
    } = f;
    if rule == "grant-once"
        && let (Some(dir), Some(id)) = (&shared.once_used_dir, &grant)
    {
        mark_once_used(dir, id);
    }
    let injected = injected
        .then(|| route.auth.as_ref().map(|a| a.token_env.as_str()))
        .flatten();
    let refused = |r: Refusal, close: bool| Denial::new(r, close, &host, &method, &path);
    let client_upgrade = if websocket {
        parts.extensions.remove::<OnUpgrade>()
    } else {
        None
    };
    // The body: bounded read and scan (a WebSocket handshake has none).
    let body = if websocket || hyper::body::Body::is_end_stream(&body) {
        Bytes::new()
    } else {
        match collect_body(body, shared.limits.max_body_bytes).await {
            Ok(b) => b,
            Err(r) => return shared.refuse(&refused(r, true)),
        }
    };
    if let Err(r) = scan_body_off_loop(&shared, &parts.headers, &body).await {
        return shared.refuse(&refused(r, false));
    }
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
            return shared.refuse(&refused(r, false));
        }
    };
    let status = resp.status().as_u16();
    let resp = match finish_response(resp, client_upgrade, route.clone()) {
        Ok(resp) => resp,
        Err(r) => return shared.refuse(&refused(r, true)),
    };
    shared.record_allowed_with(&host, &method, &path, "egress", rule, status, injected);
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
