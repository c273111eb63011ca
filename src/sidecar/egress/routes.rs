//! The route table: which hosts the agent may reach, on which paths, with which credential.
//!
//! Matching is on the exact host after lower-casing; a trailing dot or any character outside a
//! host name is refused, so look-alike spellings never match a route that carries a credential.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ipnet::IpNet;

use crate::secret::Secret;

pub(crate) use crate::sidecar::wire::AuthScheme;
use crate::sidecar::wire::{GrantEntry, RouteEntry};

/// A run-time grant on a route (see [`crate::sidecar::wire::GrantEntry`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GrantRule {
    pub id: String,
    /// Empty: every path.
    pub path_prefixes: Vec<String>,
    /// Empty: every method.
    pub methods: Vec<String>,
    pub once: bool,
}

/// Which rule let a request through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Access {
    /// The route itself.
    Route,
    /// A grant; `once` grants are claimed (see [`OnceLedger`]) by the caller.
    Grant { id: String, once: bool },
}

/// Why no rule let a request through: the path is outside every rule, or a rule covers the
/// path but not the method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAccess {
    Path,
    Method,
}

/// The `once` grants that have served their request. Kept across policy reloads (the grant
/// stays in the grants file until supervise removes it), so a used grant never serves again.
#[derive(Debug, Default)]
pub struct OnceLedger {
    used: Mutex<HashSet<String>>,
}

impl OnceLedger {
    /// Take grant `id`: `true` for the first caller only.
    pub(crate) fn claim(&self, id: &str) -> bool {
        match self.used.lock() {
            Ok(mut g) => g.insert(id.to_string()),
            Err(p) => p.into_inner().insert(id.to_string()),
        }
    }

    pub(crate) fn is_used(&self, id: &str) -> bool {
        match self.used.lock() {
            Ok(g) => g.contains(id),
            Err(p) => p.into_inner().contains(id),
        }
    }
}

/// The credential a route injects; the value comes from the daemon's environment.
#[derive(Debug, Clone)]
pub struct RouteAuth {
    pub(crate) scheme: AuthScheme,
    pub token_env: String,
    pub value: Secret,
}

/// One resolved route.
#[derive(Debug, Clone)]
pub struct Route {
    pub host: String,
    pub path_allowlist: Vec<String>,
    pub auth: Option<RouteAuth>,
    pub tls_passthrough: bool,
    pub(crate) ssrf_ip_allowlist: Vec<IpNet>,
    /// Run-time grants on this host.
    pub(crate) grants: Vec<GrantRule>,
    /// The host has no route of its own: only its grants let requests through.
    pub(crate) granted_only: bool,
}

impl Route {
    /// A route that exists only for the grants on `host`.
    fn granted(host: String) -> Route {
        Route {
            host,
            path_allowlist: Vec::new(),
            auth: None,
            tls_passthrough: false,
            ssrf_ip_allowlist: Vec::new(),
            grants: Vec::new(),
            granted_only: true,
        }
    }

    /// Which rule lets `method` on `path` through: the route's own path allowlist (any
    /// method), else the first grant that covers both and is not a used `once` grant.
    pub(crate) fn access(
        &self,
        method: &str,
        path: &str,
        used: &OnceLedger,
    ) -> Result<Access, NoAccess> {
        if !self.granted_only && self.path_allowed(path) {
            return Ok(Access::Route);
        }
        let mut path_matched = false;
        for g in &self.grants {
            if g.once && used.is_used(&g.id) {
                continue;
            }
            if !prefix_allowed(&g.path_prefixes, path) {
                continue;
            }
            path_matched = true;
            if g.methods.is_empty() || g.methods.iter().any(|m| m == method) {
                return Ok(Access::Grant {
                    id: g.id.clone(),
                    once: g.once,
                });
            }
        }
        Err(if path_matched {
            NoAccess::Method
        } else {
            NoAccess::Path
        })
    }

    /// Is this route a plain tunnel? `tls_passthrough` tunnels a route that injects nothing;
    /// a route that injects a credential must be intercepted to do so, and its passthrough
    /// flag then only concerns the upstream proxy (pipelock), which egress reaches over TLS.
    pub(crate) fn tunnels(&self) -> bool {
        self.tls_passthrough && self.auth.is_none()
    }

    /// Is `path` (without query) inside the allowlist? An empty allowlist allows every path.
    /// A prefix matches at a segment boundary; dot segments and encoded separators are refused
    /// because the upstream could normalise them out of the allowed prefix.
    pub(crate) fn path_allowed(&self, path: &str) -> bool {
        prefix_allowed(&self.path_allowlist, path)
    }
}

/// [`Route::path_allowed`] for any list of prefixes.
fn prefix_allowed(prefixes: &[String], path: &str) -> bool {
    if prefixes.is_empty() {
        return true;
    }
    if !path.starts_with('/') || path_is_ambiguous(path) {
        return false;
    }
    prefixes.iter().any(|prefix| {
        path == prefix
            || (path.starts_with(prefix.as_str())
                && (prefix.ends_with('/') || path.as_bytes().get(prefix.len()) == Some(&b'/')))
    })
}

/// Would an upstream possibly read `path` as a different path? Dot segments (also with a
/// `;param`, as some servers strip it), backslashes, encoded separators, NUL, bytes that are
/// not UTF-8 (overlong encodings of `.` and `/`) and Unicode look-alikes of `.`, `/` and `\`
/// are refused, at every level of percent-decoding (double encoding), because the upstream may
/// normalise them out of the allowed prefix.
fn path_is_ambiguous(path: &str) -> bool {
    let mut cur: Vec<u8> = path.as_bytes().to_vec();
    // Three rounds of decoding cover double and triple encoding; more is refused outright.
    for _ in 0..4 {
        if layer_is_ambiguous(&cur) {
            return true;
        }
        let decoded: Vec<u8> = percent_encoding::percent_decode(&cur).collect();
        if decoded == cur {
            return false;
        }
        cur = decoded;
    }
    true
}

fn layer_is_ambiguous(p: &[u8]) -> bool {
    let lower = p.to_ascii_lowercase();
    let has = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    if has(b"%2e") || has(b"%2f") || has(b"%5c") || p.contains(&b'\\') || p.contains(&0) {
        return true;
    }
    let Ok(text) = std::str::from_utf8(p) else {
        return true;
    };
    // Characters that Unicode normalisation (NFKC) turns into `.`, `/` or `\`.
    const LOOK_ALIKES: [char; 8] = [
        '\u{2024}', '\u{FE52}', '\u{FF0E}', '\u{2215}', '\u{2044}', '\u{FF0F}', '\u{FE68}',
        '\u{FF3C}',
    ];
    if text.contains(LOOK_ALIKES) {
        return true;
    }
    p.split(|b| *b == b'/').any(|seg| {
        let name = seg.split(|b| *b == b';').next().unwrap_or(seg);
        name == b"." || name == b".."
    })
}

/// The live route table.
#[derive(Debug, Default)]
pub struct RouteTable {
    by_host: HashMap<String, Arc<Route>>,
    /// Used `once` grants; shared by every generation of one daemon's table.
    pub once: Arc<OnceLedger>,
}

impl RouteTable {
    /// Resolve the routes file's entries, reading token values through `env` (the daemon's environment).
    pub(crate) fn build(
        raw: Vec<RouteEntry>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let mut by_host = HashMap::new();
        for (i, r) in raw.into_iter().enumerate() {
            let host = normalize_route_host(&r.host)
                .ok_or_else(|| format!("`routes[{i}].host`: `{}` is not a host name", r.host))?;
            for p in &r.path_allowlist {
                if !p.starts_with('/') {
                    return Err(format!(
                        "`routes[{i}].path_allowlist`: `{p}` must start with `/`"
                    ));
                }
            }
            let auth = match (r.auth_scheme, r.token_env) {
                (None, None) => None,
                (Some(scheme), Some(token_env)) => {
                    let value = env(&token_env).filter(|v| !v.is_empty()).ok_or_else(|| {
                        format!("`routes[{i}]` ({host}): environment variable `{token_env}` is not set; pass it to the egress daemon")
                    })?;
                    if value.contains(['\r', '\n', '\0']) {
                        return Err(format!(
                            "`routes[{i}]` ({host}): the value of `{token_env}` contains a line break"
                        ));
                    }
                    Some(RouteAuth {
                        scheme,
                        token_env,
                        value: Secret::new(value),
                    })
                }
                _ => {
                    return Err(format!(
                        "`routes[{i}]` ({host}): `auth_scheme` and `token_env` go together"
                    ));
                }
            };
            let route = Route {
                host: host.clone(),
                path_allowlist: r.path_allowlist,
                auth,
                tls_passthrough: r.tls_passthrough,
                ssrf_ip_allowlist: r.ssrf_ip_allowlist,
                grants: Vec::new(),
                granted_only: false,
            };
            if by_host.insert(host.clone(), Arc::new(route)).is_some() {
                return Err(format!("`routes[{i}]`: host `{host}` appears twice"));
            }
        }
        Ok(RouteTable {
            by_host,
            once: Arc::default(),
        })
    }

    /// [`RouteTable::build`] plus run-time `grants` (the grants file), with `once` as the
    /// ledger of used grants. A grant on a tunnelled route is not applied: egress cannot see
    /// the paths or methods inside a tunnel it does not intercept.
    pub(crate) fn build_with_grants(
        raw: Vec<RouteEntry>,
        grants: Vec<GrantEntry>,
        env: &dyn Fn(&str) -> Option<String>,
        once: Arc<OnceLedger>,
    ) -> Result<Self, String> {
        let mut t = Self::build(raw, env)?;
        t.once = once;
        for (i, g) in grants.into_iter().enumerate() {
            let host = normalize_route_host(&g.host)
                .ok_or_else(|| format!("`grants[{i}].host`: `{}` is not a host name", g.host))?;
            if g.path_prefixes.iter().any(|p| !p.starts_with('/')) {
                return Err(format!(
                    "`grants[{i}].path_prefixes`: every prefix must start with `/`"
                ));
            }
            let entry = t
                .by_host
                .entry(host.clone())
                .or_insert_with(|| Arc::new(Route::granted(host.clone())));
            if entry.tunnels() {
                tracing::warn!(host = %host, id = %g.id, "grant on a tunnelled route ignored");
                continue;
            }
            Arc::make_mut(entry).grants.push(GrantRule {
                id: g.id,
                path_prefixes: g.path_prefixes,
                methods: g.methods,
                once: g.once,
            });
        }
        Ok(t)
    }

    /// The route for a request host (as the agent wrote it), if any.
    pub(crate) fn lookup(&self, request_host: &str) -> Option<&Arc<Route>> {
        let host = normalize_request_host(request_host)?;
        self.by_host.get(host.as_ref())
    }

    pub fn len(&self) -> usize {
        self.by_host.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }

    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.by_host.keys().map(String::as_str)
    }
}

fn valid_host_chars(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_' || b == b':')
        && !h.starts_with('.')
        && !h.contains("..")
}

/// Normalise a host from the routes file: lower-case, a trailing dot dropped, IPv6 brackets
/// removed. `None` when it is not a host name or address.
pub(crate) fn normalize_route_host(host: &str) -> Option<String> {
    let h = host.trim();
    let h = h.strip_suffix('.').unwrap_or(h);
    let h = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    let h = h.to_ascii_lowercase();
    valid_host_chars(&h).then_some(h)
}

/// Normalise a host the agent sent: lower-case only. A trailing dot, brackets around
/// something that is not IPv6, or odd characters mean no match.
pub(crate) fn normalize_request_host(host: &str) -> Option<std::borrow::Cow<'_, str>> {
    let h = match host.strip_prefix('[') {
        Some(inner) => {
            let inner = inner.strip_suffix(']')?;
            inner.parse::<std::net::Ipv6Addr>().ok()?;
            inner
        }
        None => host,
    };
    if h.ends_with('.') || !valid_host_chars(h) {
        return None;
    }
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(std::borrow::Cow::Owned(h.to_ascii_lowercase()))
    } else {
        Some(std::borrow::Cow::Borrowed(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(host: &str) -> RouteEntry {
        RouteEntry::host(host)
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn exact_host_match_only() {
        let t = RouteTable::build(vec![raw("API.Example.com.")], &no_env).unwrap();
        assert!(t.lookup("api.example.com").is_some());
        assert!(t.lookup("API.EXAMPLE.COM").is_some());
        assert!(t.lookup("api.example.com.").is_none());
        assert!(t.lookup("evil-api.example.com").is_none());
        assert!(t.lookup("example.com").is_none());
        assert!(t.lookup("x.api.example.com").is_none());
        assert!(t.lookup("api.example.com\0").is_none());
        assert!(t.lookup("api.example.com@evil").is_none());
    }

    #[test]
    fn token_comes_from_env_and_must_exist() {
        let mut r = raw("a.test");
        r.auth_scheme = Some(AuthScheme::Bearer);
        r.token_env = Some("EGRESS_TOKEN_0".into());
        let err = RouteTable::build(vec![r.clone()], &no_env).unwrap_err();
        assert!(err.contains("EGRESS_TOKEN_0"), "{err}");
        let t = RouteTable::build(vec![r], &|k| {
            (k == "EGRESS_TOKEN_0").then(|| "tok-value".to_string())
        })
        .unwrap();
        let auth = t.lookup("a.test").unwrap().auth.clone().unwrap();
        assert_eq!(auth.value.expose(), "tok-value");
        assert!(!format!("{auth:?}").contains("tok-value"));
    }

    #[test]
    fn duplicate_hosts_and_half_auth_refused() {
        assert!(RouteTable::build(vec![raw("a.test"), raw("A.test")], &no_env).is_err());
        let mut r = raw("a.test");
        r.auth_scheme = Some(AuthScheme::Token);
        assert!(RouteTable::build(vec![r], &no_env).is_err());
    }

    #[test]
    fn passthrough_with_credential_is_intercepted() {
        let mut a = raw("a.test");
        a.tls_passthrough = true;
        a.auth_scheme = Some(AuthScheme::Bearer);
        a.token_env = Some("EGRESS_TOKEN_0".into());
        let mut b = raw("b.test");
        b.tls_passthrough = true;
        let t = RouteTable::build(vec![a, b], &|_| Some("v".into())).unwrap();
        assert!(!t.lookup("a.test").unwrap().tunnels());
        assert!(t.lookup("b.test").unwrap().tunnels());
    }

    #[test]
    fn path_allowlist_is_segment_aware() {
        let mut r = raw("a.test");
        r.path_allowlist = vec!["/v1".into(), "/repos/".into()];
        let t = RouteTable::build(vec![r], &no_env).unwrap();
        let route = t.lookup("a.test").unwrap();
        assert!(route.path_allowed("/v1"));
        assert!(route.path_allowed("/v1/messages"));
        assert!(route.path_allowed("/repos/x"));
        assert!(!route.path_allowed("/v1evil"));
        assert!(!route.path_allowed("/admin"));
        assert!(!route.path_allowed("/v1/../admin"));
        assert!(!route.path_allowed("/v1/%2e%2e/admin"));
        assert!(!route.path_allowed("/v1%2f..%2fadmin"));
        assert!(!route.path_allowed("/repos"));
        for bypass in [
            "/v1/..;/admin",
            "/v1/..;x=1/admin",
            "/v1/.;/admin",
            "/v1/%252e%252e/admin",
            "/v1/%25252e%25252e/admin",
            "/v1/%252fadmin",
            "/v1/%c0%ae%c0%ae/admin",
            "/v1/%e0%80%ae/admin",
            "/v1/x%00",
            "/v1/..\\admin",
            "/v1/%ef%bc%8e%ef%bc%8e/admin",
            "/v1/\u{FF0E}\u{FF0E}\u{FF0F}admin",
            "/v1/..%e2%88%95admin",
        ] {
            assert!(!route.path_allowed(bypass), "{bypass}");
        }
        for fine in [
            "/v1/a;v=1",
            "/v1/...",
            "/v1/.well-known",
            "/v1/a%20b",
            "/v1/%e2%82%ac",
        ] {
            assert!(route.path_allowed(fine), "{fine}");
        }
    }

    #[test]
    fn empty_allowlist_allows_all_paths() {
        let t = RouteTable::build(vec![raw("a.test")], &no_env).unwrap();
        assert!(t.lookup("a.test").unwrap().path_allowed("/anything/at/all"));
    }

    fn grant(id: &str, host: &str, paths: &[&str], methods: &[&str], once: bool) -> GrantEntry {
        GrantEntry {
            id: id.into(),
            host: host.into(),
            path_prefixes: paths.iter().map(|s| s.to_string()).collect(),
            methods: methods.iter().map(|s| s.to_string()).collect(),
            once,
        }
    }

    #[test]
    fn grants_widen_routes_enforce_methods_and_once_serves_one() {
        let mut base = raw("a.test");
        base.path_allowlist = vec!["/base/".into()];
        let t = RouteTable::build_with_grants(
            vec![base],
            vec![
                grant("g1", "a.test", &["/read/"], &["GET"], false),
                grant("g2", "new.test", &["/once/"], &[], true),
            ],
            &no_env,
            Arc::default(),
        )
        .unwrap();
        let a = t.lookup("a.test").unwrap();
        let used = &t.once;
        assert_eq!(a.access("POST", "/base/x", used), Ok(Access::Route));
        assert_eq!(
            a.access("GET", "/read/x", used),
            Ok(Access::Grant {
                id: "g1".into(),
                once: false
            })
        );
        assert_eq!(a.access("POST", "/read/x", used), Err(NoAccess::Method));
        assert_eq!(a.access("GET", "/other", used), Err(NoAccess::Path));
        // A granted-only host allows nothing but its grants.
        let n = t.lookup("new.test").unwrap();
        assert_eq!(n.access("GET", "/", used), Err(NoAccess::Path));
        assert!(matches!(
            n.access("GET", "/once/a", used),
            Ok(Access::Grant { once: true, .. })
        ));
        assert!(used.claim("g2"));
        assert!(!used.claim("g2"), "a once grant is claimed once");
        assert_eq!(n.access("GET", "/once/a", used), Err(NoAccess::Path));
        // The ledger survives a rebuild (a reload of the same grants).
        let t2 = RouteTable::build_with_grants(
            vec![],
            vec![grant("g2", "new.test", &["/once/"], &[], true)],
            &no_env,
            t.once.clone(),
        )
        .unwrap();
        let n2 = t2.lookup("new.test").unwrap();
        assert_eq!(n2.access("GET", "/once/a", &t2.once), Err(NoAccess::Path));
        // A grant is refused when it names no host.
        assert!(
            RouteTable::build_with_grants(
                vec![],
                vec![grant("x", "a b", &[], &[], false)],
                &no_env,
                Arc::default()
            )
            .is_err()
        );
    }
}
