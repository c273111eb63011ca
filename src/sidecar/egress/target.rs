//! Which request targets the proxy accepts.
//!
//! A target that two parsers could read differently is refused before any route lookup:
//! userinfo in the authority (`http://allowed@evil/` and its mirror image), ports written in a
//! non-canonical way (`:0443`, `:+443`, an empty port), CONNECT to anything but `host:port`,
//! CONNECT or a WebSocket upgrade carrying a body (its bytes would be read as tunnel data), and
//! the `host:port` form on any other method.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, Method, Uri};

/// Split `host[:port]` (IPv6 in brackets). `None` when the port is not plain decimal digits
/// without a leading zero, or does not fit in 16 bits.
pub(crate) fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &authority[..end + 2];
        let after = &rest[end + 1..];
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(parse_port(p)?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(parse_port(p)?))),
        None => Some((authority, None)),
    }
}

/// A port as a URI should write it: 1 to 5 digits, no sign, no leading zero.
pub(crate) fn parse_port(p: &str) -> Option<u16> {
    let canonical = !p.is_empty()
        && p.len() <= 5
        && p.bytes().all(|b| b.is_ascii_digit())
        && !(p.len() > 1 && p.starts_with('0'));
    if canonical { p.parse().ok() } else { None }
}

/// Check the request line and the framing headers of a request on the proxy listener.
/// `Err` names the rule that makes it a 400.
pub(crate) fn check_proxy_target(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(), &'static str> {
    if let Some(a) = uri.authority() {
        if a.as_str().contains('@') {
            return Err("userinfo-in-target");
        }
        if split_host_port(a.as_str()).is_none() {
            return Err("bad-port");
        }
    }
    if method != Method::CONNECT && uri.scheme().is_none() && uri.authority().is_some() {
        // `GET host:port`: the authority form belongs to CONNECT alone.
        return Err("authority-form-without-connect");
    }
    if method == Method::CONNECT {
        let authority_form = uri.scheme().is_none()
            && uri.path_and_query().is_none_or(|p| p.as_str().is_empty())
            && uri.authority().is_some_and(|a| a.port().is_some());
        if !authority_form {
            return Err("bad-connect-target");
        }
        if has_body(headers) {
            return Err("connect-with-body");
        }
    }
    let websocket = headers
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if websocket && has_body(headers) {
        // Unread body bytes would run into the upgraded stream, unscanned.
        return Err("upgrade-with-body");
    }
    Ok(())
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get_all(CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: &str, target: &str, headers: &[(&str, &str)]) -> Result<(), &'static str> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        check_proxy_target(&method, &target.parse().unwrap(), &h)
    }

    #[test]
    fn ports_must_be_canonical() {
        assert_eq!(split_host_port("a.test:443"), Some(("a.test", Some(443))));
        assert_eq!(split_host_port("a.test"), Some(("a.test", None)));
        assert_eq!(split_host_port("[::1]:443"), Some(("[::1]", Some(443))));
        assert_eq!(split_host_port("[::1]"), Some(("[::1]", None)));
        for bad in [
            "a.test:0443",
            "a.test:+443",
            "a.test:",
            "a.test:65536",
            "a.test:443 ",
            "a.test:0x1bb",
            "[::1]:0443",
            "[::1]x",
            "a.test:000443",
        ] {
            assert_eq!(split_host_port(bad), None, "{bad}");
        }
    }

    #[test]
    fn userinfo_and_odd_ports_refused() {
        assert_eq!(
            check("GET", "http://evil@a.test/", &[]),
            Err("userinfo-in-target")
        );
        assert_eq!(
            check("GET", "http://a.test@evil/", &[]),
            Err("userinfo-in-target")
        );
        assert_eq!(check("GET", "http://a.test:0080/", &[]), Err("bad-port"));
        assert_eq!(check("GET", "http://a.test/x", &[]), Ok(()));
        assert_eq!(check("GET", "http://a.test:80/x", &[]), Ok(()));
        assert_eq!(
            check("GET", "a.test:443", &[]),
            Err("authority-form-without-connect")
        );
        assert_eq!(check("OPTIONS", "*", &[]), Ok(()));
        assert_eq!(check("GET", "/v1/x", &[]), Ok(()));
    }

    #[test]
    fn connect_needs_authority_form_and_no_body() {
        assert_eq!(check("CONNECT", "a.test:443", &[]), Ok(()));
        assert_eq!(
            check("CONNECT", "a.test:443", &[("content-length", "0")]),
            Ok(())
        );
        assert_eq!(
            check("CONNECT", "https://a.test:443/", &[]),
            Err("bad-connect-target")
        );
        assert_eq!(check("CONNECT", "a.test", &[]), Err("bad-connect-target"));
        assert_eq!(check("CONNECT", "/", &[]), Err("bad-connect-target"));
        assert_eq!(
            check("CONNECT", "a.test:443", &[("content-length", "5")]),
            Err("connect-with-body")
        );
        assert_eq!(
            check("CONNECT", "a.test:443", &[("transfer-encoding", "chunked")]),
            Err("connect-with-body")
        );
        assert_eq!(
            check(
                "GET",
                "http://a.test/ws",
                &[("upgrade", "websocket"), ("content-length", "4")]
            ),
            Err("upgrade-with-body")
        );
        assert_eq!(
            check("GET", "http://a.test/ws", &[("upgrade", "websocket")]),
            Ok(())
        );
    }
}
