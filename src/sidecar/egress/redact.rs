//! Keep the injected credential from flowing back to the agent (C4).
//!
//! An upstream that echoes `Authorization` (a debug endpoint, an error page) would hand the
//! agent the real token. On routes that inject one, response headers (also trailers and a
//! custom reason phrase) and the response body have every occurrence of the token value, as is,
//! JSON-escaped or percent-encoded, masked with `*` (same length, so framing holds). A chunk
//! ending in a partial match holds back only those bytes, so streamed responses are not
//! delayed. Auth routes ask upstreams for uncompressed responses; a gzip or deflate answer
//! sent anyway is decoded on the fly so the mask can apply.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::HeaderValue;
use hyper::body::{Body, Frame, SizeHint};

/// Mask every occurrence of `needle` in `data`; returns whether anything changed.
pub(crate) fn mask_in_place(data: &mut [u8], needle: &[u8]) -> bool {
    if needle.is_empty() || data.len() < needle.len() {
        return false;
    }
    let mut changed = false;
    let mut i = 0;
    while i + needle.len() <= data.len() {
        if data[i..i + needle.len()] == *needle {
            data[i..i + needle.len()].fill(b'*');
            changed = true;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    changed
}

/// Length of the longest suffix of `data` that is a proper prefix of `needle`.
fn partial_suffix(data: &[u8], needle: &[u8]) -> usize {
    let max = needle.len().saturating_sub(1).min(data.len());
    (1..=max)
        .rev()
        .find(|&k| data[data.len() - k..] == needle[..k])
        .unwrap_or(0)
}

/// The spellings of the token an upstream may echo: as is, JSON-escaped (`\/`) and
/// percent-encoded, when those differ.
#[derive(Debug, Clone)]
pub(crate) struct Needles(Vec<Vec<u8>>);

impl Needles {
    pub(crate) fn for_token(token: &[u8]) -> Self {
        let mut all = vec![token.to_vec()];
        if token.contains(&b'/') {
            let mut escaped = Vec::with_capacity(token.len() + 4);
            for &b in token {
                if b == b'/' {
                    escaped.push(b'\\');
                }
                escaped.push(b);
            }
            all.push(escaped);
        }
        let encoded: String =
            percent_encoding::percent_encode(token, percent_encoding::NON_ALPHANUMERIC)
                .collect::<String>()
                // Unreserved characters stay as they are in every encoder.
                .replace("%2D", "-")
                .replace("%2E", ".")
                .replace("%5F", "_")
                .replace("%7E", "~");
        if encoded.as_bytes() != token {
            all.push(encoded.to_ascii_lowercase().into_bytes());
            all.push(encoded.into_bytes());
        }
        all.retain(|n| !n.is_empty());
        all.dedup();
        Needles(all)
    }

    /// Mask every spelling in `data`; returns whether anything changed.
    pub(crate) fn mask(&self, data: &mut [u8]) -> bool {
        let mut changed = false;
        for n in &self.0 {
            changed |= mask_in_place(data, n);
        }
        changed
    }

    fn contained_in(&self, data: &[u8]) -> bool {
        self.0
            .iter()
            .any(|n| data.windows(n.len()).any(|w| w == n.as_slice()))
    }

    /// How many trailing bytes of `data` could start a spelling (held back until more come).
    fn partial_suffix(&self, data: &[u8]) -> usize {
        self.0
            .iter()
            .map(|n| partial_suffix(data, n))
            .max()
            .unwrap_or(0)
    }
}

/// Mask the token in response header values.
pub(crate) fn mask_headers(headers: &mut HeaderMap, needles: &Needles) {
    for v in headers.values_mut() {
        if needles.contained_in(v.as_bytes()) {
            let mut bytes = v.as_bytes().to_vec();
            needles.mask(&mut bytes);
            if let Ok(nv) = HeaderValue::from_bytes(&bytes) {
                *v = nv;
            }
        }
    }
}

/// Mask the token in a response head: header values and a non-standard reason phrase
/// (hyper relays an upstream's own reason phrase verbatim).
pub(crate) fn mask_head(parts: &mut http::response::Parts, needles: &Needles) {
    mask_headers(&mut parts.headers, needles);
    let masked = parts
        .extensions
        .get::<hyper::ext::ReasonPhrase>()
        .and_then(|reason| {
            let mut bytes = reason.as_bytes().to_vec();
            needles.mask(&mut bytes).then_some(bytes)
        });
    if let Some(bytes) = masked {
        match hyper::ext::ReasonPhrase::try_from(bytes) {
            Ok(r) => {
                parts.extensions.insert(r);
            }
            Err(_) => {
                parts.extensions.remove::<hyper::ext::ReasonPhrase>();
            }
        }
    }
}

/// A decompressor for a response body the upstream encoded although it was asked not to:
/// the token can only be masked in the decoded bytes.
pub(crate) enum Decoder {
    Gzip(flate2::write::MultiGzDecoder<Vec<u8>>),
    Zlib(flate2::write::ZlibDecoder<Vec<u8>>),
}

impl Decoder {
    /// The decoder for a response's `Content-Encoding`; `Ok(None)` when it is not encoded,
    /// `Err(encoding)` when it cannot be decoded here. When a decoder is returned the
    /// encoding and length headers are dropped (the body is passed on decoded).
    pub(crate) fn for_response(headers: &mut HeaderMap) -> Result<Option<Decoder>, String> {
        let encodings: Vec<String> = headers
            .get_all(http::header::CONTENT_ENCODING)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("?").split(','))
            .map(|e| e.trim().to_ascii_lowercase())
            .filter(|e| !e.is_empty() && e != "identity")
            .collect();
        let decoder = match encodings.as_slice() {
            [] => return Ok(None),
            [one] if one == "gzip" || one == "x-gzip" => {
                Decoder::Gzip(flate2::write::MultiGzDecoder::new(Vec::new()))
            }
            [one] if one == "deflate" => Decoder::Zlib(flate2::write::ZlibDecoder::new(Vec::new())),
            other => return Err(other.join(", ")),
        };
        headers.remove(http::header::CONTENT_ENCODING);
        headers.remove(http::header::CONTENT_LENGTH);
        Ok(Some(decoder))
    }

    fn feed(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        use std::io::Write;
        match self {
            Decoder::Gzip(d) => {
                d.write_all(data)?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::Zlib(d) => {
                d.write_all(data)?;
                Ok(std::mem::take(d.get_mut()))
            }
        }
    }

    fn finish(&mut self) -> std::io::Result<Vec<u8>> {
        match self {
            Decoder::Gzip(d) => {
                d.try_finish()?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::Zlib(d) => {
                d.try_finish()?;
                Ok(std::mem::take(d.get_mut()))
            }
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body with the token masked (decoded first when a [`Decoder`] is given).
pub(crate) struct RedactBody<B> {
    inner: B,
    needles: Arc<Needles>,
    held: BytesMut,
    pending: Option<Frame<Bytes>>,
    done: bool,
    decoder: Option<Decoder>,
    /// Whether the decoder was given any bytes.
    fed: bool,
}

impl<B> RedactBody<B> {
    pub(crate) fn new(inner: B, needles: Arc<Needles>) -> Self {
        RedactBody {
            inner,
            needles,
            held: BytesMut::new(),
            pending: None,
            done: false,
            decoder: None,
            fed: false,
        }
    }

    /// Decode the body with `decoder` before masking.
    pub(crate) fn decoding(mut self, decoder: Option<Decoder>) -> Self {
        self.decoder = decoder;
        self
    }

    /// Take in upstream bytes (decoded when needed); returns what can be passed on now.
    fn take_in(&mut self, data: &[u8], last: bool) -> Result<Bytes, BoxError> {
        match &mut self.decoder {
            Some(d) => {
                let decoded = d.feed(data)?;
                self.held.extend_from_slice(&decoded);
                self.fed |= !data.is_empty();
                // A bodiless answer (HEAD, 304) may still name its encoding: nothing to finish.
                if last && self.fed {
                    let rest = d.finish()?;
                    self.held.extend_from_slice(&rest);
                }
            }
            None => self.held.extend_from_slice(data),
        }
        self.needles.mask(&mut self.held);
        let keep = if last {
            0
        } else {
            self.needles.partial_suffix(&self.held)
        };
        Ok(self.held.split_to(self.held.len() - keep).freeze())
    }
}

impl<B> Body for RedactBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(f) = this.pending.take() {
            return Poll::Ready(Some(Ok(f)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let out = match this.take_in(&data, false) {
                            Ok(out) => out,
                            Err(e) => return Poll::Ready(Some(Err(e))),
                        };
                        if out.is_empty() {
                            continue;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                    Err(other) => {
                        let other = match other.into_trailers() {
                            Ok(mut trailers) => {
                                mask_headers(&mut trailers, &this.needles);
                                Frame::trailers(trailers)
                            }
                            Err(frame) => frame,
                        };
                        // Trailers: flush held bytes first.
                        let out = match this.take_in(&[], true) {
                            Ok(out) => out,
                            Err(e) => return Poll::Ready(Some(Err(e))),
                        };
                        if out.is_empty() {
                            return Poll::Ready(Some(Ok(other)));
                        }
                        this.pending = Some(other);
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                },
                Poll::Ready(None) => {
                    this.done = true;
                    let out = match this.take_in(&[], true) {
                        Ok(out) => out,
                        Err(e) => return Poll::Ready(Some(Err(e))),
                    };
                    if out.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none()
            && self.held.is_empty()
            && (self.done || (self.decoder.is_none() && self.inner.is_end_stream()))
    }

    fn size_hint(&self) -> SizeHint {
        if self.decoder.is_some() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body yielding the given frames one at a time.
    struct Frames(std::collections::VecDeque<Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    /// A body of data frames, one per chunk.
    fn data_frames(chunks: std::collections::VecDeque<Bytes>) -> Frames {
        Frames(chunks.into_iter().map(Frame::data).collect())
    }

    async fn run(chunks: &[&str], needle: &str) -> (String, usize) {
        let body = data_frames(chunks.iter().map(|c| Bytes::from(c.to_string())).collect());
        let mut r = RedactBody::new(body, Arc::new(Needles::for_token(needle.as_bytes())));
        let mut out = String::new();
        let mut n = 0;
        while let Some(f) = r.frame().await {
            out.push_str(std::str::from_utf8(&f.unwrap().into_data().unwrap()).unwrap());
            n += 1;
        }
        (out, n)
    }

    #[tokio::test]
    async fn token_masked_even_across_chunks() {
        let (out, _) = run(&["{\"auth\": \"Bearer sec", "ret-tok\"}"], "secret-tok").await;
        assert_eq!(out, "{\"auth\": \"Bearer **********\"}");
        let (out, _) = run(&["secret-toksecret-tok"], "secret-tok").await;
        assert_eq!(out, "********************");
    }

    #[tokio::test]
    async fn unrelated_bytes_are_not_held_back() {
        let (out, n) = run(&["data: one\n\n", "data: two\n\n"], "secret-tok").await;
        assert_eq!(out, "data: one\n\ndata: two\n\n");
        assert_eq!(n, 2, "each chunk is passed on at once");
        let (out, _) = run(&["ends with sec"], "secret-tok").await;
        assert_eq!(
            out, "ends with sec",
            "a held partial match is flushed at the end"
        );
    }

    #[tokio::test]
    async fn trailers_masked() {
        let mut t = HeaderMap::new();
        t.insert("x-echo", "Bearer secret-tok".parse().unwrap());
        let body = Frames([Frame::data(Bytes::from_static(b"body")), Frame::trailers(t)].into());
        let collected = RedactBody::new(body, Arc::new(Needles::for_token(b"secret-tok")))
            .collect()
            .await
            .unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert_eq!(trailers["x-echo"], "Bearer **********");
        assert_eq!(collected.to_bytes(), "body");
    }

    #[tokio::test]
    async fn encoded_body_is_decoded_then_masked() {
        use std::io::Write;
        let plain = format!("{}secret-tok{}", "x".repeat(5000), "y".repeat(5000));
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(plain.as_bytes()).unwrap();
        let gz = e.finish().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("content-encoding", "gzip".parse().unwrap());
        headers.insert("content-length", gz.len().to_string().parse().unwrap());
        let decoder = Decoder::for_response(&mut headers).unwrap();
        assert!(decoder.is_some() && headers.is_empty());
        let half = gz.len() / 2;
        let body = data_frames(
            [
                Bytes::copy_from_slice(&gz[..half]),
                Bytes::copy_from_slice(&gz[half..]),
            ]
            .into(),
        );
        let out = RedactBody::new(body, Arc::new(Needles::for_token(b"secret-tok")))
            .decoding(decoder)
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(out.len(), plain.len());
        assert_eq!(out, plain.replace("secret-tok", "**********"));
        // A bodiless encoded answer (HEAD, 304) ends cleanly.
        let mut headers = HeaderMap::new();
        headers.insert("content-encoding", "gzip".parse().unwrap());
        let empty = RedactBody::new(
            data_frames(Default::default()),
            Arc::new(Needles::for_token(b"secret-tok")),
        )
        .decoding(Decoder::for_response(&mut headers).unwrap())
        .collect()
        .await
        .unwrap()
        .to_bytes();
        assert!(empty.is_empty());
        let mut headers = HeaderMap::new();
        headers.insert("content-encoding", "br".parse().unwrap());
        assert_eq!(
            Decoder::for_response(&mut headers).err().as_deref(),
            Some("br")
        );
        let mut headers = HeaderMap::new();
        headers.insert("content-encoding", "identity".parse().unwrap());
        assert!(Decoder::for_response(&mut headers).unwrap().is_none());
    }

    #[test]
    fn reason_phrase_masked() {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts
            .extensions
            .insert(hyper::ext::ReasonPhrase::try_from(&b"OK secret-tok"[..]).unwrap());
        mask_head(&mut parts, &Needles::for_token(b"secret-tok"));
        let reason = parts.extensions.get::<hyper::ext::ReasonPhrase>().unwrap();
        assert_eq!(reason.as_bytes(), b"OK **********");
    }

    #[test]
    fn escaped_and_encoded_echoes_masked() {
        let n = Needles::for_token(b"ab/c+d=");
        let mut json = br#"{"auth": "Bearer ab\/c+d="}"#.to_vec();
        assert!(n.mask(&mut json));
        assert!(!String::from_utf8_lossy(&json).contains("ab"), "{json:?}");
        let mut url = b"Location: /x?t=ab%2Fc%2Bd%3D&u=ab%2fc%2bd%3d".to_vec();
        assert!(n.mask(&mut url));
        assert_eq!(url, b"Location: /x?t=*************&u=*************");
        // A plain token has one spelling.
        assert_eq!(Needles::for_token(b"tok-live_1.x~").0.len(), 1);
    }

    #[test]
    fn headers_masked() {
        let mut h = HeaderMap::new();
        h.insert("x-echo", "Bearer secret-tok".parse().unwrap());
        h.insert("x-other", "fine".parse().unwrap());
        mask_headers(&mut h, &Needles::for_token(b"secret-tok"));
        assert_eq!(h["x-echo"], "Bearer **********");
        assert_eq!(h["x-other"], "fine");
    }
}
