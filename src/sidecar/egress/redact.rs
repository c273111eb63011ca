//! Keep the injected credential from flowing back to the agent (C4).
//!
//! An upstream that echoes `Authorization` (a debug endpoint, an error page) would hand the
//! agent the real token. On routes that inject one, response headers and the response body
//! have every occurrence of the token value masked with `*` (same length, so framing holds).
//! A chunk ending in a partial match holds back only those bytes, so streamed responses are
//! not delayed. Auth routes ask upstreams for uncompressed responses so the mask can apply.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::HeaderValue;
use hyper::body::{Body, Frame, SizeHint};

/// Mask every occurrence of `needle` in `data`; returns whether anything changed.
pub fn mask_in_place(data: &mut [u8], needle: &[u8]) -> bool {
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

/// Mask the token in response header values.
pub fn mask_headers(headers: &mut HeaderMap, needle: &[u8]) {
    for v in headers.values_mut() {
        if v.as_bytes()
            .windows(needle.len().max(1))
            .any(|w| w == needle)
        {
            let mut bytes = v.as_bytes().to_vec();
            mask_in_place(&mut bytes, needle);
            if let Ok(nv) = HeaderValue::from_bytes(&bytes) {
                *v = nv;
            }
        }
    }
}

/// A response body with the token masked.
pub struct RedactBody<B> {
    inner: B,
    needle: Arc<[u8]>,
    held: BytesMut,
    pending: Option<Frame<Bytes>>,
    done: bool,
}

impl<B> RedactBody<B> {
    pub fn new(inner: B, needle: Arc<[u8]>) -> Self {
        RedactBody {
            inner,
            needle,
            held: BytesMut::new(),
            pending: None,
            done: false,
        }
    }
}

impl<B> Body for RedactBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
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
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        this.held.extend_from_slice(&data);
                        mask_in_place(&mut this.held, &this.needle);
                        let keep = partial_suffix(&this.held, &this.needle);
                        let out = this.held.split_to(this.held.len() - keep).freeze();
                        if out.is_empty() {
                            continue;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                    Err(other) => {
                        // Trailers: flush held bytes first.
                        if this.held.is_empty() {
                            return Poll::Ready(Some(Ok(other)));
                        }
                        this.pending = Some(other);
                        let out = this.held.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                },
                Poll::Ready(None) => {
                    this.done = true;
                    if this.held.is_empty() {
                        return Poll::Ready(None);
                    }
                    let out = this.held.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.held.is_empty() && (self.done || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body yielding the given chunks one frame at a time.
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    async fn run(chunks: &[&str], needle: &str) -> (String, usize) {
        let body = Chunks(chunks.iter().map(|c| Bytes::from(c.to_string())).collect());
        let mut r = RedactBody::new(body, Arc::from(needle.as_bytes()));
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

    #[test]
    fn headers_masked() {
        let mut h = HeaderMap::new();
        h.insert("x-echo", "Bearer secret-tok".parse().unwrap());
        h.insert("x-other", "fine".parse().unwrap());
        mask_headers(&mut h, b"secret-tok");
        assert_eq!(h["x-echo"], "Bearer **********");
        assert_eq!(h["x-other"], "fine");
    }
}
