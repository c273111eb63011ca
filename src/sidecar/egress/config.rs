//! Command-line flags of `bot-bottle-egress` and the routes file parser.
//!
//! The Docker backend renders exactly these flags; the routes file is rendered by the CLI and
//! holds no secret (token values come from the daemon's own environment, named by `token_env`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

use super::EgressError;
use super::limits::Limits;
use crate::sidecar::wire::{GrantEntry, GrantsFile, RouteEntry, RoutesFile, WireFile};

/// Where the proxy listens: a TCP address or a unix socket path (`unix:/path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("`unix:` needs a socket path, e.g. `unix:/run/egress.sock`".into());
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        s.parse::<SocketAddr>()
            .map(ListenAddr::Tcp)
            .map_err(|_| format!("`{s}` is not `host:port` or `unix:/path`"))
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// `--resolve HOST=IP[:PORT]`: pin a host name to an address (and optionally a port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvePin {
    pub host: String,
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl FromStr for ResolvePin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (host, target) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not `HOST=IP[:PORT]`"))?;
        let host = super::routes::normalize_route_host(host)
            .ok_or_else(|| format!("`{host}` is not a valid host name"))?;
        if let Ok(ip) = target.parse::<IpAddr>() {
            return Ok(ResolvePin {
                host,
                ip,
                port: None,
            });
        }
        let sa = target.parse::<SocketAddr>().map_err(|_| {
            format!("`{target}` is not `IP` or `IP:PORT` (IPv6 with a port: `[::1]:8443`)")
        })?;
        Ok(ResolvePin {
            host,
            ip: sa.ip(),
            port: Some(sa.port()),
        })
    }
}

/// Flags of `bot-bottle-egress`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "bot-bottle-egress",
    about = "The bottle's egress proxy: allowlist, TLS interception, credential injection, SSRF guard, secret scan"
)]
pub struct EgressArgs {
    /// Listen address: `host:port` or `unix:/path/to/socket`.
    #[arg(long, value_name = "ADDR")]
    pub listen: ListenAddr,
    /// Routes file (`routes.json`, the launcher's wire format). Re-read when it changes.
    #[arg(long, value_name = "FILE")]
    pub routes: PathBuf,
    /// Grants file (`granted.json`, written by supervise): run-time routes on top of the
    /// routes file. Re-read when it changes; a missing file is no grants.
    #[arg(long, value_name = "FILE")]
    pub grants: Option<PathBuf>,
    /// Directory where each used `once` grant is marked (a file named by its id), for
    /// supervise to retire it.
    #[arg(long, value_name = "DIR")]
    pub once_used_dir: Option<PathBuf>,
    /// PEM certificate of the bottle CA (leaf certificates are minted from it).
    #[arg(long, value_name = "PEM")]
    pub ca_cert: PathBuf,
    /// PEM private key of the bottle CA.
    #[arg(long, value_name = "PEM")]
    pub ca_key: PathBuf,
    /// Send upstream traffic through this HTTP proxy (`http://host:port`), e.g. pipelock.
    #[arg(long, value_name = "URL")]
    pub upstream_proxy: Option<String>,
    /// Extra root certificate trusted for upstream TLS when an upstream proxy re-signs it.
    #[arg(long, value_name = "PEM")]
    pub upstream_ca: Option<PathBuf>,
    /// Extra trusted upstream roots on top of the system roots (repeatable).
    #[arg(long, value_name = "PEM")]
    pub(crate) extra_ca: Vec<PathBuf>,
    /// Allow destinations in this private range (repeatable), e.g. the bottle's own subnet.
    #[arg(long, value_name = "CIDR")]
    pub(crate) allow_cidr: Vec<IpNet>,
    /// Pin a host to an address: `HOST=IP` or `HOST=IP:PORT` (repeatable).
    #[arg(long, value_name = "HOST=IP[:PORT]")]
    pub resolve: Vec<ResolvePin>,
    /// Append one JSON line per decision to this file (default: stderr).
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Largest request head (request line and headers) in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::DEFAULT.max_header_bytes)]
    pub max_header_bytes: usize,
    /// Most request headers accepted.
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT.max_headers)]
    pub max_headers: usize,
    /// Largest request body accepted; bodies are buffered and scanned whole up to this bound.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::DEFAULT.max_body_bytes)]
    pub max_body_bytes: usize,
    /// Seconds a client may take to send a request head.
    #[arg(long, value_name = "SECS", default_value_t = Limits::DEFAULT.header_timeout.as_secs())]
    pub header_timeout: u64,
    /// Seconds a connection may stay silent in both directions before it is closed.
    #[arg(long, value_name = "SECS", default_value_t = Limits::DEFAULT.idle_timeout.as_secs())]
    pub idle_timeout: u64,
    /// Most concurrent client connections.
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT.max_connections)]
    pub max_connections: usize,
    /// Event-loop threads. One serves an agent with the least CPU per request; more help only
    /// when many clients share one daemon.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
}

/// Settings resolved from [`EgressArgs`]: files read, nothing left to parse.
#[derive(Debug, Clone)]
pub struct EgressConfig {
    pub listen: ListenAddr,
    pub routes_path: PathBuf,
    /// The grants file, when supervise writes one.
    pub grants_path: Option<PathBuf>,
    /// Where used `once` grants are marked.
    pub once_used_dir: Option<PathBuf>,
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub upstream_proxy: Option<UpstreamProxy>,
    /// Extra upstream roots (PEM texts): `--extra-ca` files and `--upstream-ca`.
    pub extra_roots_pem: Vec<String>,
    /// Trust the system roots too (tests turn this off for speed and isolation).
    pub system_roots: bool,
    pub allow_cidrs: Vec<IpNet>,
    pub resolve: Vec<ResolvePin>,
    pub audit_log: Option<PathBuf>,
    pub limits: Limits,
    /// How often the routes and grants files are polled for changes.
    pub reload_interval: Duration,
}

/// `--upstream-proxy`: host and port of a plain HTTP proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamProxy {
    pub host: String,
    pub port: u16,
}

impl FromStr for UpstreamProxy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| format!("upstream proxy `{s}` must start with `http://`"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("upstream proxy `{s}`: bad port"))?;
                (
                    h.trim_start_matches('[').trim_end_matches(']').to_string(),
                    port,
                )
            }
            _ => (rest.to_string(), 80),
        };
        if host.is_empty() || host.contains('/') || host.contains('@') {
            return Err(format!("upstream proxy `{s}` must be `http://host:port`"));
        }
        Ok(UpstreamProxy { host, port })
    }
}

fn read_text(path: &Path) -> Result<String, EgressError> {
    std::fs::read_to_string(path).map_err(|source| EgressError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl EgressConfig {
    /// Read the files named by the flags.
    pub fn from_args(args: EgressArgs) -> Result<Self, EgressError> {
        let mut extra_roots_pem = Vec::new();
        for p in args.extra_ca.iter().chain(args.upstream_ca.iter()) {
            extra_roots_pem.push(read_text(p)?);
        }
        let upstream_proxy = args
            .upstream_proxy
            .as_deref()
            .map(UpstreamProxy::from_str)
            .transpose()
            .map_err(EgressError::Argument)?;
        Ok(EgressConfig {
            listen: args.listen,
            routes_path: args.routes,
            grants_path: args.grants,
            once_used_dir: args.once_used_dir,
            ca_cert_pem: read_text(&args.ca_cert)?,
            ca_key_pem: read_text(&args.ca_key)?,
            upstream_proxy,
            extra_roots_pem,
            system_roots: true,
            allow_cidrs: args.allow_cidr,
            resolve: args.resolve,
            audit_log: args.audit_log,
            limits: Limits {
                max_header_bytes: args.max_header_bytes,
                max_headers: args.max_headers,
                max_body_bytes: args.max_body_bytes,
                header_timeout: Duration::from_secs(args.header_timeout.max(1)),
                idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
                max_connections: args.max_connections.max(1),
                ..Limits::DEFAULT
            },
            reload_interval: super::reload::DEFAULT_INTERVAL,
        })
    }
}

/// Parse the routes file text (the typed wire format; no environment lookups yet).
pub(crate) fn parse_routes(text: &str) -> Result<Vec<RouteEntry>, String> {
    RoutesFile::parse(text).map(|f| f.routes)
}

/// Parse the grants file; empty text (no file) is no grants.
pub(crate) fn parse_grants(text: &str) -> Result<Vec<GrantEntry>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    GrantsFile::parse(text).map(|f| f.grants)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::wire::AuthScheme;

    #[test]
    fn listen_forms() {
        assert_eq!(
            "127.0.0.1:9099".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("127.0.0.1:9099".parse().unwrap())
        );
        assert_eq!(
            "unix:/run/e.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/run/e.sock".into())
        );
        assert!("unix:".parse::<ListenAddr>().is_err());
        assert!("nonsense".parse::<ListenAddr>().is_err());
    }

    #[test]
    fn resolve_pin_forms() {
        let p: ResolvePin = "API.Test=127.0.0.1:8443".parse().unwrap();
        assert_eq!(
            (p.host.as_str(), p.ip.to_string(), p.port),
            ("api.test", "127.0.0.1".into(), Some(8443))
        );
        let p: ResolvePin = "v6.test=[::1]:1".parse().unwrap();
        assert_eq!(p.port, Some(1));
        let p: ResolvePin = "v6.test=::1".parse().unwrap();
        assert_eq!(p.port, None);
        assert!("x.test".parse::<ResolvePin>().is_err());
        assert!("x.test=not-an-ip".parse::<ResolvePin>().is_err());
    }

    #[test]
    fn upstream_proxy_forms() {
        assert_eq!(
            "http://pipelock:8888".parse::<UpstreamProxy>().unwrap(),
            UpstreamProxy {
                host: "pipelock".into(),
                port: 8888
            }
        );
        assert!("https://x:1".parse::<UpstreamProxy>().is_err());
        assert!("http://u:p@x:1".parse::<UpstreamProxy>().is_err());
    }

    #[test]
    fn routes_file_parses_every_field() {
        let text = r#"{"routes": [{"host": "api.example.com", "path_allowlist": ["/v1/"], "auth_scheme": "Bearer",
            "token_env": "EGRESS_TOKEN_0", "tls_passthrough": false, "ssrf_ip_allowlist": ["10.0.0.0/8", "192.168.1.1"]},
            {"host": "pass.example.com", "tls_passthrough": true}]}"#;
        let r = parse_routes(text).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].auth_scheme, Some(AuthScheme::Bearer));
        assert_eq!(r[0].token_env.as_deref(), Some("EGRESS_TOKEN_0"));
        assert_eq!(r[0].ssrf_ip_allowlist.len(), 2);
        assert!(r[1].tls_passthrough);
        assert!(r[1].auth_scheme.is_none());
    }

    #[test]
    fn routes_file_errors_name_the_key() {
        let e = parse_routes(r#"{"routes": [{"host": "a", "auth_scheme": "basic"}]}"#).unwrap_err();
        assert!(e.contains("auth_scheme") || e.contains("basic"), "{e}");
        let e = parse_routes(r#"{"routes": [{"host": "a", "colour": 1}]}"#).unwrap_err();
        assert!(e.contains("colour"), "{e}");
        let e = parse_routes(r#"{"routes": [{"path_allowlist": []}]}"#).unwrap_err();
        assert!(e.contains("host"), "{e}");
        assert!(parse_routes(r#"{"routes": [], "x": 1}"#).is_err());
        assert!(parse_routes("[1,2]").is_err());
    }

    #[test]
    fn routes_file_is_json_only() {
        // One format on the wire: YAML (even a JSON-compatible reader's YAML) is refused.
        let e = parse_routes("routes:\n  - host: api.example.com\n").unwrap_err();
        assert!(e.contains("JSON"), "{e}");
        assert!(parse_routes(r#"{"routes": []}"#).unwrap().is_empty());
    }
}
