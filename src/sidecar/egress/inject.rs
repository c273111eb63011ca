//! Header surgery: strip what must not travel, inject the route's credential.
//!
//! The agent's `Authorization` never reaches an auth route's upstream (it is replaced), and
//! `Proxy-Authorization` never reaches any upstream. Hop-by-hop headers are dropped because
//! the proxy re-frames every message.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::routes::Route;

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Remove hop-by-hop headers (and those named by `Connection`). `keep_upgrade` keeps
/// `Upgrade` and `Connection: upgrade` for a WebSocket handshake.
pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !(keep_upgrade && n == header::UPGRADE))
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP.iter() {
        h.remove(n);
    }
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        h.remove(header::UPGRADE);
    }
}

/// Prepare the agent's headers for scanning and forwarding on `route`: hop-by-hop and
/// `Proxy-Authorization` always go; `Authorization` goes on routes that inject their own.
pub(crate) fn strip_agent_credentials(h: &mut HeaderMap, route: &Route, keep_upgrade: bool) {
    strip_hop_by_hop(h, keep_upgrade);
    h.remove(header::EXPECT);
    if route.auth.is_some() {
        h.remove(header::AUTHORIZATION);
    }
}

/// Set `Authorization: <scheme> <value>` from the route; returns the env slot name used.
pub(crate) fn inject_credential<'r>(h: &mut HeaderMap, route: &'r Route) -> Option<&'r str> {
    let auth = route.auth.as_ref()?;
    let text = format!("{} {}", auth.scheme.as_str(), auth.value.expose());
    let mut v = HeaderValue::from_str(&text).ok()?;
    v.set_sensitive(true);
    h.insert(header::AUTHORIZATION, v);
    Some(auth.token_env.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::sidecar::egress::routes::{AuthScheme, RouteAuth};

    fn route(auth: bool) -> Route {
        Route {
            host: "a.test".into(),
            path_allowlist: vec![],
            auth: auth.then(|| RouteAuth {
                scheme: AuthScheme::Bearer,
                token_env: "EGRESS_TOKEN_0".into(),
                value: Secret::new("real-token"),
            }),
            tls_passthrough: false,
            ssrf_ip_allowlist: vec![],
            grants: vec![],
            granted_only: false,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn agent_authorization_replaced_on_auth_route() {
        let r = route(true);
        let mut h = headers(&[
            ("authorization", "Bearer agent-fake"),
            ("proxy-authorization", "Basic x"),
            ("x-keep", "1"),
        ]);
        strip_agent_credentials(&mut h, &r, false);
        assert!(h.get("authorization").is_none());
        assert_eq!(inject_credential(&mut h, &r), Some("EGRESS_TOKEN_0"));
        assert_eq!(h.get_all("authorization").iter().count(), 1);
        assert_eq!(h["authorization"], "Bearer real-token");
        assert!(h.get("proxy-authorization").is_none());
        assert_eq!(h["x-keep"], "1");
    }

    #[test]
    fn no_auth_route_keeps_agent_header_and_injects_nothing() {
        let r = route(false);
        let mut h = headers(&[("authorization", "Bearer agent")]);
        strip_agent_credentials(&mut h, &r, false);
        assert_eq!(inject_credential(&mut h, &r), None);
        assert_eq!(h["authorization"], "Bearer agent");
    }

    #[test]
    fn connection_named_headers_removed() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty(), "{h:?}");
        let mut h = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }
}
