//! The egress policy as a pure function of the request head.
//!
//! [`decide`] takes the route table, the secret scanner and one request head (with how it
//! reached the proxy and what the framing sniffer saw of its raw bytes) and answers
//! [`Verdict::Forward`] (the head rewritten for the upstream), [`Verdict::Connect`] or
//! [`Verdict::Deny`]. It touches no socket, file or clock, so every refusal class is tested
//! here without a network. What needs I/O stays in the transport (`proxy`): reading and
//! scanning the body, resolving and connecting (SSRF), the TLS handshake, the upstream's
//! answer. Those refusals become a [`Denial`] too and go through the same single writer of
//! the audit line and the refusal response.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode, Uri};

use super::audit::log_path;
use super::inject::{inject_credential, strip_agent_credentials};
use super::inspect::{scan_headers, scan_target};
use super::refuse::{Layer, Refusal};
use super::routes::{Access, NoAccess, Route, RouteTable, normalize_request_host};
use super::target::{check_proxy_target, split_host_port};
use crate::scan::Scanner;

/// What the requests on one client connection are aimed at.
#[derive(Clone, Debug)]
pub(crate) enum Origin {
    /// The proxy listener itself: absolute-form requests and CONNECT.
    Proxy,
    /// Inside an intercepted CONNECT tunnel to this host (as the agent wrote it).
    Tunnel(Arc<str>),
}

/// How a forwarded request reaches its upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `GET http://host/…` on the proxy listener.
    Plain,
    /// `GET https://host/…` on the proxy listener (the proxy does the TLS).
    AbsoluteHttps,
    /// Origin-form request inside an intercepted tunnel.
    Tunnel(Arc<str>),
}

/// One request head as it reached the proxy.
pub(crate) struct Head {
    pub(crate) parts: Parts,
    pub(crate) origin: Origin,
    /// The framing sniffer's verdict on the raw bytes of this head (`Err` names the rule).
    pub(crate) framing: Result<(), &'static str>,
}

/// The answer for one head.
pub(crate) enum Verdict {
    Forward(Box<Forward>),
    Connect(Box<Connect>),
    Deny(Box<Denial>),
}

/// A request allowed so far: the body still has to pass the scan.
pub(crate) struct Forward {
    /// The head for the upstream: the agent's credentials and hop-by-hop headers stripped,
    /// the route's credential injected (exact host only), `Host` and an absolute URI set.
    pub(crate) parts: Parts,
    pub(crate) route: Arc<Route>,
    /// A WebSocket handshake: no body, the connection is upgraded on a 101.
    pub(crate) websocket: bool,
    /// Whether the route's credential was injected.
    pub(crate) injected: bool,
    /// The audit rule of the allowed request.
    pub(crate) rule: &'static str,
    /// The run-time grant that allowed it, if any (a `once` grant is already claimed).
    pub(crate) grant: Option<String>,
    /// Route host, method and path (query dropped) as the audit line shows them.
    pub(crate) host: String,
    pub(crate) method: String,
    pub(crate) path: String,
}

/// A CONNECT to a routed host on 443: the transport checks the destination and tunnels.
pub(crate) struct Connect {
    /// Carries the upgrade handle of the client connection.
    pub(crate) parts: Parts,
    pub(crate) route: Arc<Route>,
    /// The host as the agent wrote it: only an exact spelling gets the credential later.
    pub(crate) host_raw: String,
}

/// A refusal: who asked for what, and which layer and rule refused it with which reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denial {
    /// Status, layer, rule and the detail the agent reads (plus the layer's hint).
    pub(crate) refusal: Refusal,
    /// Ask the client to drop the connection (framing may be out of step).
    pub(crate) close: bool,
    /// Route host once one matched, else the host as the agent wrote it (may be empty).
    pub(crate) host: String,
    pub(crate) method: String,
    /// Path without query; `[redacted]` when the request line held a credential.
    pub(crate) path: String,
}

impl Denial {
    pub(crate) fn new(
        refusal: Refusal,
        close: bool,
        host: impl Into<String>,
        method: impl Into<String>,
        path: impl Into<String>,
    ) -> Self {
        Denial {
            refusal,
            close,
            host: host.into(),
            method: method.into(),
            path: path.into(),
        }
    }
}

/// Decide on one request head. Pure: no I/O.
pub(crate) fn decide(routes: &RouteTable, scanner: &Scanner, head: Head) -> Verdict {
    let Head {
        parts,
        origin,
        framing,
    } = head;
    let deny = |r: Refusal, close: bool, host: &str, path: &str| {
        Verdict::Deny(Box::new(Denial::new(
            r,
            close,
            host,
            parts.method.as_str(),
            path,
        )))
    };
    if let Err(rule) = framing {
        let r = Refusal::new(
            StatusCode::BAD_REQUEST,
            Layer::Protocol,
            rule,
            "ambiguous request framing",
        );
        let host = parts.uri.host().unwrap_or("");
        return deny(r, true, host, log_path(parts.uri.path()));
    }
    if let Err(rule) = check_proxy_target(&parts.method, &parts.uri, &parts.headers) {
        let r = Refusal::new(
            StatusCode::BAD_REQUEST,
            Layer::Protocol,
            rule,
            "write the target as `http://host[:port]/path` or CONNECT `host:port`, without userinfo or a body",
        );
        return deny(r, true, "", log_path(parts.uri.path()));
    }
    let target = match origin {
        Origin::Proxy if parts.method == Method::CONNECT => {
            return decide_connect(routes, parts);
        }
        Origin::Proxy => match parts
            .uri
            .scheme_str()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("http") => Target::Plain,
            Some("https") => Target::AbsoluteHttps,
            _ => {
                let r = Refusal::new(
                    StatusCode::BAD_REQUEST,
                    Layer::Protocol,
                    "not-a-proxy-request",
                    "use this address only as an HTTP(S) proxy",
                );
                return deny(r, true, "", log_path(parts.uri.path()));
            }
        },
        Origin::Tunnel(host) => {
            if parts.method == Method::CONNECT {
                let r = Refusal::forbidden(Layer::Protocol, "connect-inside-tunnel", "");
                return deny(r, true, &host, "");
            }
            Target::Tunnel(host)
        }
    };
    decide_request(routes, scanner, parts, target)
}

/// CONNECT on the proxy listener: a routed host, on 443.
fn decide_connect(routes: &RouteTable, parts: Parts) -> Verdict {
    let deny = |r: Refusal, host: &str| {
        // A refused CONNECT also closes the connection: a client may already have sent
        // tunnel bytes (its ClientHello) that must not be read as the next request.
        Verdict::Deny(Box::new(Denial::new(r, true, host, "CONNECT", "")))
    };
    let authority = parts
        .uri
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
        return deny(r, "");
    };
    let Some(route) = routes.lookup(host_raw).cloned() else {
        let r = Refusal::forbidden(
            Layer::Allowlist,
            "host-not-in-routes",
            format!("no route for `{host_raw}`"),
        );
        return deny(r, host_raw);
    };
    if port != Some(443) {
        let r = Refusal::forbidden(
            Layer::Allowlist,
            "port-not-allowed",
            format!("only port 443 is routed for `{}`", route.host),
        );
        return deny(r, &route.host);
    }
    let host_raw = host_raw.to_string();
    Verdict::Connect(Box::new(Connect {
        parts,
        route,
        host_raw,
    }))
}

/// Methods that cannot carry a secret; any other (extension) method is scanned as text.
const STANDARD_METHODS: [Method; 9] = [
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

/// A request to forward: host, port, path, headers; then the head for the upstream.
fn decide_request(
    routes: &RouteTable,
    scanner: &Scanner,
    mut parts: Parts,
    target: Target,
) -> Verdict {
    let method = parts.method.clone();
    let full_path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let path_only = log_path(&full_path).to_string();
    let deny = |r: Refusal, close: bool, host: &str, path: &str| {
        Verdict::Deny(Box::new(Denial::new(r, close, host, method.as_str(), path)))
    };

    // 1. Which host, and is it consistent with how the agent reached us?
    let (host_raw, scheme, default_port) = match &target {
        Target::Tunnel(t) => (t.to_string(), "https", 443u16),
        Target::Plain | Target::AbsoluteHttps => {
            let https = target == Target::AbsoluteHttps;
            let Some(h) = parts.uri.host() else {
                let r = Refusal::new(StatusCode::BAD_REQUEST, Layer::Protocol, "no-host", "");
                return deny(r, true, "", &path_only);
            };
            let default = if https { 443 } else { 80 };
            if parts.uri.port_u16().is_some_and(|p| p != default) {
                let r = Refusal::forbidden(
                    Layer::Allowlist,
                    "port-not-allowed",
                    format!("only port {default} is routed"),
                );
                return deny(r, false, h, &path_only);
            }
            (h.to_string(), if https { "https" } else { "http" }, default)
        }
    };
    let Some(route) = routes.lookup(&host_raw).cloned() else {
        let r = Refusal::forbidden(
            Layer::Allowlist,
            "host-not-in-routes",
            format!("no route for `{host_raw}`"),
        );
        return deny(r, false, &host_raw, &path_only);
    };
    let host = route.host.as_str();
    if let Err(r) = check_host_consistency(&parts, host, default_port, &target) {
        return deny(r, true, host, &path_only);
    }
    if target == Target::AbsoluteHttps && route.tunnels() {
        let r = Refusal::forbidden(
            Layer::Allowlist,
            "passthrough-route",
            "this host is tunnelled; use CONNECT",
        );
        return deny(r, false, host, &path_only);
    }
    fn unbracket(h: &str) -> &str {
        h.trim_start_matches('[').trim_end_matches(']')
    }
    let exact_host = unbracket(&host_raw) == route.host
        && parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .and_then(split_host_port)
            .is_none_or(|(h, _)| unbracket(h) == route.host);

    // 2. Path allowlist and run-time grants (methods, once). A `once` grant is claimed here,
    // in the ledger the table shares across reloads: of two racing requests one wins.
    let grant = match route.access(method.as_str(), parts.uri.path(), &routes.once) {
        Ok(Access::Route) => None,
        Ok(Access::Grant { id, once }) => {
            if once && !routes.once.claim(&id) {
                let r = Refusal::forbidden(
                    Layer::Path,
                    "once-grant-used",
                    "the one-time grant for this path was used; ask again",
                );
                return deny(r, false, host, &path_only);
            }
            Some((id, once))
        }
        Err(NoAccess::Method) => {
            let r = Refusal::forbidden(
                Layer::Path,
                "method-not-allowed",
                format!("`{method}` is not granted on `{path_only}`"),
            );
            return deny(r, false, host, &path_only);
        }
        Err(NoAccess::Path) => {
            let r = Refusal::forbidden(
                Layer::Path,
                "path-not-allowed",
                format!("`{path_only}` is outside the allowlist"),
            );
            return deny(r, false, host, &path_only);
        }
    };

    // 3. Headers: drop what must not travel, then scan what is left (before injection). The
    // method travels too: an extension method is any token the agent likes.
    let websocket = is_websocket(&parts);
    strip_agent_credentials(&mut parts.headers, &route, websocket);
    let in_request_line = scan_target(scanner, &full_path).or_else(|| {
        (!STANDARD_METHODS.contains(&method))
            .then(|| scanner.scan(method.as_str().as_bytes()))
            .flatten()
    });
    if let Some(f) = in_request_line {
        let r = Refusal::forbidden(
            Layer::SecretScan,
            f.rule,
            format!("{} in the request line", f.description),
        );
        return deny(r, false, host, "[redacted]");
    }
    if let Some(f) = scan_headers(scanner, &parts.headers) {
        let r = Refusal::forbidden(
            Layer::SecretScan,
            f.rule,
            format!("{} in a request header", f.description),
        );
        return deny(r, false, host, &path_only);
    }

    // 4. The head for the upstream. The body is buffered: the upstream gets the length egress
    // read, as hyper writes it, never the agent's own spelling of it.
    parts.headers.remove(header::CONTENT_LENGTH);
    // Inject only on an exact host spelling.
    let injected = exact_host && inject_credential(&mut parts.headers, &route).is_some();
    if injected {
        // Uncompressed answers, so an echoed credential can be masked (see `redact`).
        parts.headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    let authority = match &target {
        Target::Tunnel(_) => host.to_string(),
        _ => bracket_v6(host),
    };
    if !parts.headers.contains_key(header::HOST) || !matches!(target, Target::Tunnel(_)) {
        if let Ok(v) = HeaderValue::from_str(&authority) {
            parts.headers.insert(header::HOST, v);
        }
    }
    let Ok(uri) = Uri::builder()
        .scheme(scheme)
        .authority(authority.as_str())
        .path_and_query(full_path.as_str())
        .build()
    else {
        let r = Refusal::new(
            StatusCode::BAD_REQUEST,
            Layer::Protocol,
            "bad-request-target",
            "",
        );
        return deny(r, true, host, &path_only);
    };
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    let rule = match (&grant, route.auth.is_some(), injected) {
        (Some((_, true)), _, _) => "grant-once",
        (Some(_), _, _) => "grant",
        (None, true, true) => "route-auth",
        (None, true, false) => "route-auth-withheld-inexact-host",
        _ => "route",
    };
    let host = host.to_string();
    Verdict::Forward(Box::new(Forward {
        parts,
        route,
        websocket,
        injected,
        rule,
        grant: grant.map(|(id, _)| id),
        host,
        method: method.as_str().to_string(),
        path: path_only,
    }))
}

/// `host` as an authority: IPv6 addresses in brackets.
fn bracket_v6(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn is_websocket(parts: &Parts) -> bool {
    let upgrade = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let conn = parts
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    upgrade && conn && parts.method == Method::GET
}

/// The Host header (and an absolute-form target inside a tunnel) must name the route host.
fn check_host_consistency(
    parts: &Parts,
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
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    if let Some(v) = hosts.next() {
        if hosts.next().is_some() {
            return Err(mismatch("a second Host header"));
        }
        // For absolute-form proxy requests the URI wins and Host is rewritten; a different
        // Host there is still suspicious, so refuse it too.
        if !v.to_str().ok().is_some_and(same) {
            return Err(mismatch("the Host header"));
        }
    }
    if let Target::Tunnel(_) = target {
        if let Some(a) = parts.uri.authority() {
            if !same(a.as_str()) {
                return Err(mismatch("the request target"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::wire::{AuthScheme, RouteEntry};

    const GH_TOKEN: &str = "ghp_T3kW9xQ2mZ7rL5vB8nJ4cY6pF1hD0sG2aE9u";
    const INJECTED: &str = "injected-credential-value";

    fn table() -> RouteTable {
        let routes = vec![
            RouteEntry {
                path_allowlist: vec!["/v1/".into()],
                auth_scheme: Some(AuthScheme::Bearer),
                token_env: Some("EGRESS_TOKEN_0".into()),
                ..RouteEntry::host("api.test")
            },
            RouteEntry::host("open.test"),
            RouteEntry {
                tls_passthrough: true,
                ..RouteEntry::host("pass.test")
            },
            RouteEntry {
                auth_scheme: Some(AuthScheme::Token),
                token_env: Some("EGRESS_TOKEN_0".into()),
                ..RouteEntry::host("plain.test")
            },
        ];
        RouteTable::build(routes, &|k| {
            (k == "EGRESS_TOKEN_0").then(|| INJECTED.into())
        })
        .unwrap()
    }

    /// A head: method, target, headers, the connection's origin, the sniffer's verdict.
    fn head(
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        origin: Origin,
        framing: Result<(), &'static str>,
    ) -> Head {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        Head {
            parts,
            origin,
            framing,
        }
    }

    /// The env slot of the injected credential (never its value).
    fn slot(f: &Forward) -> Option<&str> {
        f.injected
            .then(|| f.route.auth.as_ref().map(|a| a.token_env.as_str()))
            .flatten()
    }

    fn tunnel(host: &str) -> Origin {
        Origin::Tunnel(Arc::from(host))
    }

    fn run(h: Head) -> Verdict {
        decide(&table(), &Scanner::new(), h)
    }

    fn denial(h: Head) -> Denial {
        match run(h) {
            Verdict::Deny(d) => *d,
            Verdict::Forward(f) => panic!("forwarded to {}", f.parts.uri),
            Verdict::Connect(c) => panic!("tunnel to {}", c.route.host),
        }
    }

    fn forward(h: Head) -> Forward {
        match run(h) {
            Verdict::Forward(f) => *f,
            Verdict::Deny(d) => panic!("refused: {d:?}"),
            Verdict::Connect(c) => panic!("tunnel to {}", c.route.host),
        }
    }

    #[test]
    fn every_refusal_class_decided_from_the_head() {
        let p = Origin::Proxy;
        let ok = Ok(());
        // (head, status, layer, rule, close, logged host, logged path)
        let cases: Vec<(Head, u16, Layer, &str, bool, &str, &str)> = vec![
            // Host allowlist, on every way in.
            (
                head("GET", "http://evil.test/x?q=1", &[], p.clone(), ok),
                403,
                Layer::Allowlist,
                "host-not-in-routes",
                false,
                "evil.test",
                "/x",
            ),
            (
                head(
                    "GET",
                    "/x",
                    &[("host", "evil.test")],
                    tunnel("evil.test"),
                    ok,
                ),
                403,
                Layer::Allowlist,
                "host-not-in-routes",
                false,
                "evil.test",
                "/x",
            ),
            (
                head("CONNECT", "evil.test:443", &[], p.clone(), ok),
                403,
                Layer::Allowlist,
                "host-not-in-routes",
                true,
                "evil.test",
                "",
            ),
            // Look-alike spellings of a routed host match nothing.
            (
                head("GET", "http://open.test./", &[], p.clone(), ok),
                403,
                Layer::Allowlist,
                "host-not-in-routes",
                false,
                "open.test.",
                "/",
            ),
            // Ports.
            (
                head("GET", "http://open.test:8080/", &[], p.clone(), ok),
                403,
                Layer::Allowlist,
                "port-not-allowed",
                false,
                "open.test",
                "/",
            ),
            (
                head("CONNECT", "open.test:22", &[], p.clone(), ok),
                403,
                Layer::Allowlist,
                "port-not-allowed",
                true,
                "open.test",
                "",
            ),
            // A passthrough route is reachable only through CONNECT.
            (
                head("GET", "https://pass.test/", &[], p.clone(), ok),
                403,
                Layer::Allowlist,
                "passthrough-route",
                false,
                "pass.test",
                "/",
            ),
            // Path allowlist, and paths an upstream could normalise out of it.
            (
                head("GET", "/admin", &[], tunnel("api.test"), ok),
                403,
                Layer::Path,
                "path-not-allowed",
                false,
                "api.test",
                "/admin",
            ),
            (
                head("GET", "/v1/%2e%2e/admin", &[], tunnel("api.test"), ok),
                403,
                Layer::Path,
                "path-not-allowed",
                false,
                "api.test",
                "/v1/%2e%2e/admin",
            ),
            // Host header and tunnel target must name the route host.
            (
                head(
                    "GET",
                    "/v1/x",
                    &[("host", "open.test")],
                    tunnel("api.test"),
                    ok,
                ),
                403,
                Layer::HostMismatch,
                "host-header-mismatch",
                true,
                "api.test",
                "/v1/x",
            ),
            (
                head(
                    "GET",
                    "http://open.test/",
                    &[("host", "open.test"), ("host", "api.test")],
                    p.clone(),
                    ok,
                ),
                403,
                Layer::HostMismatch,
                "host-header-mismatch",
                true,
                "open.test",
                "/",
            ),
            (
                head("GET", "https://open.test/v1/x", &[], tunnel("api.test"), ok),
                403,
                Layer::HostMismatch,
                "host-header-mismatch",
                true,
                "api.test",
                "/v1/x",
            ),
            // Smuggling and ambiguity, from the sniffer's verdict and from the head itself.
            (
                head(
                    "POST",
                    "http://open.test/",
                    &[],
                    p.clone(),
                    Err("multiple-content-length"),
                ),
                400,
                Layer::Protocol,
                "multiple-content-length",
                true,
                "open.test",
                "/",
            ),
            (
                head("GET", "http://user@open.test/", &[], p.clone(), ok),
                400,
                Layer::Protocol,
                "userinfo-in-target",
                true,
                "",
                "/",
            ),
            (
                head("GET", "open.test:80", &[], p.clone(), ok),
                400,
                Layer::Protocol,
                "authority-form-without-connect",
                true,
                "",
                "",
            ),
            (
                head(
                    "CONNECT",
                    "open.test:443",
                    &[("content-length", "5")],
                    p.clone(),
                    ok,
                ),
                400,
                Layer::Protocol,
                "connect-with-body",
                true,
                "",
                "",
            ),
            (
                head("GET", "/x", &[("host", "open.test")], p.clone(), ok),
                400,
                Layer::Protocol,
                "not-a-proxy-request",
                true,
                "",
                "/x",
            ),
            (
                head("CONNECT", "open.test:443", &[], tunnel("open.test"), ok),
                403,
                Layer::Protocol,
                "connect-inside-tunnel",
                true,
                "open.test",
                "",
            ),
            // Secrets in the request line (logged path redacted) and in headers.
            (
                head(
                    "GET",
                    &format!("http://open.test/x?key={GH_TOKEN}"),
                    &[],
                    p.clone(),
                    ok,
                ),
                403,
                Layer::SecretScan,
                "github-pat",
                false,
                "open.test",
                "[redacted]",
            ),
            (
                head(
                    "GET",
                    "/x",
                    &[("x-debug", GH_TOKEN)],
                    tunnel("open.test"),
                    ok,
                ),
                403,
                Layer::SecretScan,
                "github-pat",
                false,
                "open.test",
                "/x",
            ),
            // An agent's own credential on a route that does not inject one is scanned too.
            (
                head(
                    "GET",
                    "/",
                    &[("authorization", &format!("token {GH_TOKEN}"))],
                    tunnel("open.test"),
                    ok,
                ),
                403,
                Layer::SecretScan,
                "github-pat",
                false,
                "open.test",
                "/",
            ),
        ];
        for (h, status, layer, rule, close, host, path) in cases {
            let what = format!("{} {}", h.parts.method, h.parts.uri);
            let d = denial(h);
            assert_eq!(d.refusal.status.as_u16(), status, "{what}: {d:?}");
            assert_eq!(d.refusal.layer, layer, "{what}: {d:?}");
            assert!(d.refusal.rule.as_str().starts_with(rule), "{what}: {d:?}");
            assert_eq!(d.close, close, "{what}: {d:?}");
            assert_eq!((d.host.as_str(), d.path.as_str()), (host, path), "{what}");
            // The agent reads the layer and rule, never the secret.
            let reason = d.refusal.body();
            assert!(
                reason.contains(layer.as_str()) && !reason.contains(GH_TOKEN),
                "{reason}"
            );
        }
    }

    #[test]
    fn credential_injected_only_on_the_exact_host_and_the_agents_own_is_replaced() {
        let f = forward(head(
            "POST",
            "/v1/messages?x=1",
            &[
                ("host", "api.test"),
                ("authorization", &format!("Bearer {GH_TOKEN}")),
                ("proxy-authorization", "Basic Zm9vOmJhcg=="),
                ("content-length", "7"),
                ("accept-encoding", "gzip"),
            ],
            tunnel("api.test"),
            Ok(()),
        ));
        assert_eq!((f.rule, slot(&f)), ("route-auth", Some("EGRESS_TOKEN_0")));
        let h = &f.parts.headers;
        assert_eq!(h["authorization"], format!("Bearer {INJECTED}").as_str());
        assert!(h["authorization"].is_sensitive());
        assert!(h.get("proxy-authorization").is_none() && h.get("content-length").is_none());
        assert_eq!(h["accept-encoding"], "identity");
        assert_eq!(f.parts.uri, "https://api.test/v1/messages?x=1");
        assert_eq!(
            (f.host.as_str(), f.method.as_str(), f.path.as_str()),
            ("api.test", "POST", "/v1/messages")
        );

        // Another spelling of the host reaches the route but gets no credential.
        let f = forward(head(
            "GET",
            "/v1/x",
            &[("host", "API.test")],
            tunnel("API.test"),
            Ok(()),
        ));
        assert_eq!(
            (f.rule, slot(&f)),
            ("route-auth-withheld-inexact-host", None)
        );
        assert!(f.parts.headers.get("authorization").is_none());

        // Plain http on the proxy listener: the URI wins, Host is rewritten, scheme kept.
        let f = forward(head(
            "GET",
            "http://plain.test/a",
            &[],
            Origin::Proxy,
            Ok(()),
        ));
        assert_eq!(f.parts.uri, "http://plain.test/a");
        assert_eq!(f.parts.headers["host"], "plain.test");
        assert_eq!(
            f.parts.headers["authorization"],
            format!("token {INJECTED}").as_str()
        );

        // A route without a credential forwards the agent's headers, minus hop-by-hop ones.
        let f = forward(head(
            "GET",
            "https://open.test/",
            &[("connection", "x-drop"), ("x-drop", "1"), ("x-keep", "1")],
            Origin::Proxy,
            Ok(()),
        ));
        assert_eq!((f.rule, slot(&f)), ("route", None));
        assert!(f.parts.headers.get("x-drop").is_none() && f.parts.headers.get("x-keep").is_some());
        assert!(!f.websocket);
    }

    #[test]
    fn connect_and_websocket_heads() {
        match run(head("CONNECT", "API.test:443", &[], Origin::Proxy, Ok(()))) {
            Verdict::Connect(c) => {
                assert_eq!(
                    (c.route.host.as_str(), c.host_raw.as_str()),
                    ("api.test", "API.test")
                );
            }
            _ => panic!("CONNECT to a routed host on 443 is a tunnel"),
        }
        let f = forward(head(
            "GET",
            "/v1/ws",
            &[
                ("host", "api.test"),
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
            ],
            tunnel("api.test"),
            Ok(()),
        ));
        assert!(f.websocket);
        assert_eq!(f.parts.headers["upgrade"], "websocket");
        // A WebSocket handshake with a body would run unscanned bytes into the stream.
        let d = denial(head(
            "GET",
            "/v1/ws",
            &[
                ("host", "api.test"),
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("content-length", "3"),
            ],
            tunnel("api.test"),
            Ok(()),
        ));
        assert_eq!(d.refusal.rule.as_str(), "upgrade-with-body");
    }

    #[test]
    fn an_extension_method_is_scanned_as_text() {
        let d = denial(head(GH_TOKEN, "/", &[], tunnel("open.test"), Ok(())));
        assert_eq!(
            (d.refusal.layer, d.path.as_str()),
            (Layer::SecretScan, "[redacted]")
        );
        let f = forward(head("PROPFIND", "/", &[], tunnel("open.test"), Ok(())));
        assert_eq!(f.method, "PROPFIND");
    }
}
