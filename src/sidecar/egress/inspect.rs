//! Secret scanning of what the agent sends: URL, headers (before injection) and body.
//!
//! Bodies are read with a bound ([`super::limits::Limits::max_body_bytes`]) and scanned
//! whole; gzip and deflate bodies are also scanned decompressed, with the same bound. Other
//! content encodings cannot be inspected and are refused.

use std::io::Read;

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_ENCODING;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::refuse::{Layer, Refusal};
use crate::scan::{Finding, Scanner};

/// Scan the request target (path and query) and, when percent-encoded, its decoded form.
pub(crate) fn scan_target(scanner: &Scanner, path_and_query: &str) -> Option<Finding> {
    scanner.scan(path_and_query.as_bytes()).or_else(|| {
        if path_and_query.contains('%') || path_and_query.contains('+') {
            let plus_as_space = path_and_query.replace('+', " ");
            let decoded: Vec<u8> = percent_encoding::percent_decode_str(&plus_as_space).collect();
            scanner.scan(&decoded)
        } else {
            None
        }
    })
}

/// `text` as it may appear in a log line: `[redacted]` when it holds a credential shape (also
/// once percent-decoded). Refused hosts and paths are logged before or without a scan.
pub(crate) fn loggable<'a>(scanner: &Scanner, text: &'a str) -> &'a str {
    if scan_target(scanner, text).is_some() {
        "[redacted]"
    } else {
        text
    }
}

/// Scan every header as `name: value` lines in one pass.
pub(crate) fn scan_headers(scanner: &Scanner, headers: &HeaderMap) -> Option<Finding> {
    let mut buf = Vec::with_capacity(512);
    for (name, value) in headers {
        buf.extend_from_slice(name.as_str().as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(value.as_bytes());
        buf.push(b'\n');
    }
    if buf.is_empty() {
        None
    } else {
        scanner.scan(&buf)
    }
}

/// Read the whole body, refusing it past `max` bytes (at once when its declared length is
/// already larger: nothing is read, and an `Expect: 100-continue` client is never told to go on).
pub(crate) async fn collect_body(body: Incoming, max: usize) -> Result<Bytes, Refusal> {
    use hyper::body::Body;
    if body.size_hint().lower() > max as u64 {
        return Err(too_large(max));
    }
    match Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(too_large(max))
            } else {
                Err(Refusal::new(
                    http::StatusCode::BAD_REQUEST,
                    Layer::Protocol,
                    "body-read-failed",
                    "",
                ))
            }
        }
    }
}

fn too_large(max: usize) -> Refusal {
    Refusal::new(
        http::StatusCode::PAYLOAD_TOO_LARGE,
        Layer::Limit,
        "body-too-large",
        format!("request bodies are limited to {max} bytes"),
    )
}

/// Scan a complete body (decompressing gzip/deflate within `max`).
pub(crate) fn scan_body(
    scanner: &Scanner,
    headers: &HeaderMap,
    body: &[u8],
    max: usize,
) -> Result<(), Refusal> {
    if body.is_empty() {
        return Ok(());
    }
    let found = |f: Finding| {
        Refusal::forbidden(
            Layer::SecretScan,
            f.rule,
            format!("{} in the request body", f.description),
        )
    };
    let encodings: Vec<String> = headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty() && s != "identity")
        .collect();
    if let Some(f) = scanner.scan(body) {
        return Err(found(f));
    }
    if encodings.is_empty() {
        // Form bodies and the like: also look at the percent-decoded text.
        if body.contains(&b'%') {
            let decoded: Vec<u8> = percent_encoding::percent_decode(body).collect();
            if let Some(f) = scanner.scan(&decoded) {
                return Err(found(f));
            }
        }
        return Ok(());
    }
    let mut data = body.to_vec();
    // Decode in reverse order of application.
    for enc in encodings.iter().rev() {
        data = decompress(enc, &data, max)?;
    }
    match scanner.scan(&data) {
        Some(f) => Err(found(f)),
        None => Ok(()),
    }
}

fn decompress(encoding: &str, data: &[u8], max: usize) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::new();
    let limit = max as u64 + 1;
    let read = match encoding {
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(data)
            .take(limit)
            .read_to_end(&mut out),
        "deflate" => {
            let r = flate2::read::ZlibDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out);
            if r.is_err() {
                out.clear();
                flate2::read::DeflateDecoder::new(data)
                    .take(limit)
                    .read_to_end(&mut out)
            } else {
                r
            }
        }
        other => {
            return Err(Refusal::new(
                http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Layer::SecretScan,
                "uninspectable-content-encoding",
                format!("content-encoding `{other}` cannot be scanned; send gzip or identity"),
            ));
        }
    };
    if read.is_err() {
        return Err(Refusal::new(
            http::StatusCode::BAD_REQUEST,
            Layer::Protocol,
            "bad-compressed-body",
            "",
        ));
    }
    if out.len() > max {
        return Err(Refusal::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            Layer::Limit,
            "decompressed-body-too-large",
            format!("decompressed request bodies are limited to {max} bytes"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn enc(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_ENCODING, v.parse().unwrap());
        h
    }

    #[test]
    fn secret_shaped_log_fields_are_redacted() {
        let s = Scanner::new();
        assert_eq!(loggable(&s, "/v1/messages"), "/v1/messages");
        assert_eq!(loggable(&s, "AKIAZ4MQ7XK2PL5RTV3N.evil.test"), "[redacted]");
        assert_eq!(loggable(&s, "/x/%41KIAZ4MQ7XK2PL5RTV3N"), "[redacted]");
    }

    #[test]
    fn gzip_bomb_is_bounded() {
        let bomb = gzip(&vec![b'a'; 2 << 20]);
        let err = scan_body(&Scanner::new(), &enc("gzip"), &bomb, 1 << 20).unwrap_err();
        assert_eq!(err.rule, "decompressed-body-too-large");
        assert!(scan_body(&Scanner::new(), &enc("gzip"), &bomb, 4 << 20).is_ok());
    }

    #[test]
    fn unknown_encoding_and_corrupt_gzip_refused() {
        assert_eq!(
            scan_body(&Scanner::new(), &enc("br"), b"xx", 100)
                .unwrap_err()
                .rule,
            "uninspectable-content-encoding"
        );
        assert_eq!(
            scan_body(&Scanner::new(), &enc("gzip"), b"not gzip", 100)
                .unwrap_err()
                .rule,
            "bad-compressed-body"
        );
    }
}
