//! Refusals that explain themselves in-band.
//!
//! Every refused request gets a short text body and an `X-Bot-Bottle-Refusal` header naming
//! the layer, the rule and what the agent can do, so the agent and the operator (who reads the
//! audit log) see the same reason.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

/// Response header carrying the refusal in one line.
pub(crate) const REFUSAL_HEADER: &str = "x-bot-bottle-refusal";

/// Which check refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layer {
    /// Host not in the route table, or on a port other than 443/80.
    Allowlist,
    /// Path outside the route's `path_allowlist`.
    Path,
    /// SNI or Host header differs from the CONNECT target.
    HostMismatch,
    /// Destination resolves to an internal address.
    Ssrf,
    /// A credential-shaped value in the URL, headers or body.
    SecretScan,
    /// Malformed or ambiguous request framing.
    Protocol,
    /// A limit was exceeded.
    Limit,
    /// The upstream could not be reached.
    Upstream,
}

impl Layer {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Layer::Allowlist => "allowlist",
            Layer::Path => "path-allowlist",
            Layer::HostMismatch => "host-mismatch",
            Layer::Ssrf => "ssrf",
            Layer::SecretScan => "secret-scan",
            Layer::Protocol => "protocol",
            Layer::Limit => "limit",
            Layer::Upstream => "upstream",
        }
    }

    /// The layer named by [`Layer::as_str`] (as audit lines spell it).
    pub(crate) fn parse(s: &str) -> Option<Layer> {
        [
            Layer::Allowlist,
            Layer::Path,
            Layer::HostMismatch,
            Layer::Ssrf,
            Layer::SecretScan,
            Layer::Protocol,
            Layer::Limit,
            Layer::Upstream,
        ]
        .into_iter()
        .find(|l| l.as_str() == s)
    }

    /// What the agent can do about a refusal by this layer (part of every refusal text).
    pub(crate) fn hint(self) -> &'static str {
        match self {
            Layer::Allowlist => {
                "this host is not in the bottle's egress routes; ask the operator to add it through the supervise tool `propose-egress-route`"
            }
            Layer::Path => {
                "this path is outside the route's path allowlist; ask the operator to widen it through the supervise tool `propose-egress-route`"
            }
            Layer::HostMismatch => {
                "send requests only to the host named in CONNECT; open a new connection for another host"
            }
            Layer::Ssrf => {
                "internal, loopback and metadata addresses are blocked; if this destination is legitimate ask the operator to allow it through the supervise tool `propose-egress-route`"
            }
            Layer::SecretScan => {
                "the request carries a credential-shaped value; remove it (egress injects the route's credential itself) or ask the operator"
            }
            Layer::Protocol => {
                "send a well-formed HTTP/1.1 request: an `http://host/path` target or CONNECT `host:443`, no userinfo, one Host, either Content-Length or chunked Transfer-Encoding"
            }
            Layer::Limit => "send a smaller request; the operator can raise the egress limits",
            Layer::Upstream => {
                "the upstream could not be reached; retry later or tell the operator"
            }
        }
    }
}

/// One refusal: status, layer and rule (no secret values, ever).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub layer: Layer,
    pub rule: String,
    /// Extra, non-secret detail (the host, the address class).
    pub detail: String,
}

impl Refusal {
    pub(crate) fn new(
        status: StatusCode,
        layer: Layer,
        rule: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Refusal {
            status,
            layer,
            rule: rule.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn forbidden(
        layer: Layer,
        rule: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Refusal::new(StatusCode::FORBIDDEN, layer, rule, detail)
    }

    /// The header value: `layer=…; rule=…; hint=…` (ASCII, one line).
    pub(crate) fn header_value(&self) -> HeaderValue {
        let text = format!(
            "layer={}; rule={}; hint={}",
            self.layer.as_str(),
            sanitize(&self.rule),
            self.layer.hint()
        );
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("layer=unknown"))
    }

    /// The text body.
    pub(crate) fn body(&self) -> String {
        let detail = if self.detail.is_empty() {
            String::new()
        } else {
            format!("detail: {}\n", sanitize(&self.detail))
        };
        format!(
            "bot-bottle egress refused this request\nlayer: {}\nrule: {}\n{detail}what to do: {}\n",
            self.layer.as_str(),
            sanitize(&self.rule),
            self.layer.hint()
        )
    }

    /// A complete response; `close` asks the client to drop the connection.
    pub(crate) fn response<B: From<Bytes>>(&self, close: bool) -> Response<B> {
        let mut resp = Response::new(B::from(Bytes::from(self.body())));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(REFUSAL_HEADER, self.header_value());
        if close {
            h.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

impl Refusal {
    /// The same response as raw HTTP/1.1 bytes, closing the connection (for answers written
    /// below hyper, see `smuggle`).
    pub(crate) fn to_http1(&self) -> Vec<u8> {
        let body = self.body();
        let header = self.header_value();
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\n{REFUSAL_HEADER}: ",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or("Error"),
        )
        .into_bytes();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(
            format!(
                "\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(body.as_bytes());
        out
    }
}

/// Printable ASCII only, bounded: details come from agent input.
fn sanitize(s: &str) -> String {
    s.chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[test]
    fn raw_form_matches_the_response() {
        let r = Refusal::new(
            StatusCode::BAD_REQUEST,
            Layer::Protocol,
            "malformed-request",
            "",
        );
        let raw = String::from_utf8(r.to_http1()).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(
            head.contains(
                "\r\nx-bot-bottle-refusal: layer=protocol; rule=malformed-request; hint="
            ),
            "{head}"
        );
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        assert!(head.ends_with("\r\nconnection: close"));
        assert_eq!(body, r.body());
    }

    #[test]
    fn refusal_names_layer_rule_and_remedy() {
        let r = Refusal::forbidden(
            Layer::Allowlist,
            "host-not-in-routes",
            "evil.example\r\nX-Injected: 1",
        );
        let resp: Response<Full<Bytes>> = r.response(false);
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let h = resp
            .headers()
            .get(REFUSAL_HEADER)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(
            h.contains("layer=allowlist")
                && h.contains("rule=host-not-in-routes")
                && h.contains("propose-egress-route"),
            "{h}"
        );
        let body = r.body();
        assert!(body.contains("propose-egress-route"));
        assert!(
            !body.contains("\r\nX-Injected"),
            "control characters are neutralised"
        );
    }
}
