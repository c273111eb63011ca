//! Request-smuggling guard (CL+TE, obfuscated Transfer-Encoding).
//!
//! hyper reads a request carrying both `Content-Length` and `Transfer-Encoding` as chunked,
//! drops the `Content-Length` header and closes the connection afterwards, so the service can no
//! longer see the conflict. [`SniffIo`] counts `Content-Length` header lines on the raw inbound
//! bytes; a request with `Transfer-Encoding` arriving while more such lines were read than
//! requests showed is refused with 400. Pipelined clients may see a false refusal; no request
//! is ever split in two. Repeated or list-valued `Content-Length` is refused too.
//!
//! hyper answers a request head it cannot parse (or one too large) itself, with a bare
//! 400/414/431. [`SniffIo`] recognises that answer on the way out (a response head written
//! while no request handed to the service is still owed one) and replaces it with a refusal
//! that explains itself like every other: the refusal header and a body naming layer and rule.
//! An HTTP/2 client, which hyper drops without a word, gets such a refusal (505) too.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::refuse::{Layer, Refusal};

const PATTERN: &[u8] = b"content-length";

/// Per-connection counters shared between the IO wrapper and the request handler.
#[derive(Debug, Default)]
pub(crate) struct Sniff {
    raw_cl_lines: AtomicU64,
    cl_headers_seen: AtomicU64,
    /// Requests handed to the service whose response head was not written yet.
    owed: AtomicU64,
    on_refusal: RefusalHook,
}

/// Told about every refusal written in place of hyper's answer (the audit).
#[derive(Default)]
struct RefusalHook(OnceLock<Box<RefusalFn>>);

type RefusalFn = dyn Fn(&Refusal) + Send + Sync;

impl std::fmt::Debug for RefusalHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefusalHook")
    }
}

impl Sniff {
    /// Call `hook` for each malformed head refused below hyper (set once per connection).
    pub(crate) fn on_refusal(&self, hook: impl Fn(&Refusal) + Send + Sync + 'static) {
        let _ = self.on_refusal.0.set(Box::new(hook));
    }

    /// Decide on one request head (every request the service sees passes here exactly once).
    /// `Err` carries the rule that makes it a 400.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        self.owed.fetch_add(1, Ordering::Relaxed);
        // `Transfer_Encoding` is not framing here, but servers that map header names to
        // variables (CGI and the like) read it as `Transfer-Encoding`.
        if headers.keys().any(|k| framing_lookalike(k.as_str())) {
            return Err("framing-header-lookalike");
        }
        let mut cls = headers.get_all(CONTENT_LENGTH).iter();
        let has_cl = match cls.next() {
            Some(first) => {
                self.cl_headers_seen.fetch_add(1, Ordering::Relaxed);
                if cls.next().is_some() {
                    return Err("multiple-content-length");
                }
                if !first.as_bytes().iter().all(u8::is_ascii_digit) {
                    return Err("malformed-content-length");
                }
                true
            }
            None => false,
        };
        let mut te = headers.get_all(TRANSFER_ENCODING).iter();
        let Some(first) = te.next() else {
            return Ok(());
        };
        if te.next().is_some() {
            return Err("multiple-transfer-encoding");
        }
        let v = first.to_str().unwrap_or("").trim();
        if !v.eq_ignore_ascii_case("chunked") {
            return Err("obfuscated-transfer-encoding");
        }
        if has_cl
            || self.raw_cl_lines.load(Ordering::Relaxed)
                > self.cl_headers_seen.load(Ordering::Relaxed)
        {
            return Err("content-length-with-transfer-encoding");
        }
        Ok(())
    }

    fn count(&self, n: u64) {
        if n > 0 {
            self.raw_cl_lines.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// A response head is being written: true when it answers a request the service saw.
    fn settle_owed(&self) -> bool {
        self.owed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

fn framing_lookalike(name: &str) -> bool {
    name.contains('_')
        && ["content-length", "transfer-encoding"].iter().any(|f| {
            f.len() == name.len()
                && f.bytes()
                    .zip(name.bytes())
                    .all(|(a, b)| a == b || (a == b'-' && b == b'_'))
        })
}

/// The status of a response head at the start of `data` (`HTTP/1.x NNN `).
fn response_status(data: &[u8]) -> Option<u16> {
    let rest = data
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| data.strip_prefix(b"HTTP/1.0 "))?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || rest.get(3) != Some(&b' ') {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// hyper's own answer to an unparsable or oversized head: a small, bodiless error head.
fn hyper_error_refusal(data: &[u8]) -> Option<Refusal> {
    if data.len() > 512 || !data.ends_with(b"\r\n\r\n") {
        return None;
    }
    let lower = data.to_ascii_lowercase();
    if !lower
        .windows(b"\r\ncontent-length: 0\r\n".len())
        .any(|w| w == b"\r\ncontent-length: 0\r\n")
    {
        return None;
    }
    let (layer, rule, detail) = match response_status(data)? {
        400 => (
            Layer::Protocol,
            "malformed-request",
            "the request line or a header could not be parsed",
        ),
        414 => (
            Layer::Limit,
            "uri-too-long",
            "the request target is too long",
        ),
        431 => (
            Layer::Limit,
            "request-head-too-large",
            "the request head is too large or has too many headers",
        ),
        _ => return None,
    };
    let status = StatusCode::from_u16(response_status(data)?).ok()?;
    Some(Refusal::new(status, layer, rule, detail))
}

/// Counts `\nContent-Length` (any case) in what the client sends, and replaces hyper's own
/// bare error answers with explained refusals.
pub(crate) struct SniffIo<T> {
    inner: T,
    sniff: Arc<Sniff>,
    /// The last bytes of the previous read, so a line split across reads is still seen.
    tail: [u8; 16],
    tail_len: usize,
    /// The last write returned `Pending`: the retry carries the same bytes, already classified.
    retrying: bool,
    /// A refusal being written in place of hyper's answer: bytes, written so far, length of
    /// the buffer it replaces.
    replacing: Option<(Vec<u8>, usize, usize)>,
    /// Whether any byte was read yet (the HTTP/2 preface can only come first).
    seen_any: bool,
    /// A refusal of an HTTP/2 client being written (bytes, written so far); then end of stream.
    preface_refusal: Option<(Vec<u8>, usize)>,
}

impl<T> SniffIo<T> {
    pub(crate) fn new(inner: T, sniff: Arc<Sniff>) -> Self {
        SniffIo {
            inner,
            sniff,
            tail: [0; 16],
            tail_len: 0,
            retrying: false,
            replacing: None,
            seen_any: false,
            preface_refusal: None,
        }
    }

    /// Look at a write that is not a retry: a response head answering no request the service
    /// saw is hyper's own error answer.
    fn classify_write(&mut self, data: &[u8]) {
        let Some(mut status) = response_status(data) else {
            return;
        };
        // `100 Continue` is written by hyper on behalf of a request still being served; the
        // final head may follow in the same buffer.
        let mut rest = data;
        while status == 100 {
            let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            rest = &rest[end + 4..];
            match response_status(rest) {
                Some(s) => status = s,
                None => return,
            }
        }
        if self.sniff.settle_owed() {
            return;
        }
        if let Some(r) = hyper_error_refusal(data) {
            if let Some(hook) = self.sniff.on_refusal.0.get() {
                hook(&r);
            }
            self.replacing = Some((r.to_http1(), 0, data.len()));
        }
    }

    fn observe(&mut self, new: &[u8]) {
        if new.is_empty() {
            return;
        }
        // Lines whose `\n` is in the old tail and whose name finishes in the new bytes.
        let mut joined = [0u8; 32];
        let head = new.len().min(PATTERN.len());
        joined[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
        joined[self.tail_len..self.tail_len + head].copy_from_slice(&new[..head]);
        let boundary = count_lines(
            &joined[..self.tail_len + head],
            self.tail_len,
            self.tail_len,
        );
        let inside = count_lines(new, new.len(), 0);
        self.sniff.count(boundary + inside);
        // Keep the last bytes of the stream for the next read.
        const KEEP: usize = PATTERN.len() + 1;
        if new.len() >= KEEP {
            self.tail[..KEEP].copy_from_slice(&new[new.len() - KEEP..]);
            self.tail_len = KEEP;
        } else {
            let total = self.tail_len + new.len();
            let drop = total.saturating_sub(KEEP);
            self.tail.copy_within(drop..self.tail_len, 0);
            let kept = self.tail_len - drop;
            self.tail[kept..kept + new.len()].copy_from_slice(new);
            self.tail_len = kept + new.len();
        }
    }
}

/// Count `\n` + PATTERN matches whose `\n` is before `nl_before` and which end after
/// `end_after` (so a match is counted once, by the scan that holds its line break).
fn count_lines(data: &[u8], nl_before: usize, end_after: usize) -> u64 {
    let mut n = 0;
    for (i, _) in data
        .iter()
        .enumerate()
        .take(nl_before)
        .filter(|(_, b)| **b == b'\n')
    {
        let start = i + 1;
        let end = start + PATTERN.len();
        if end <= data.len() && end > end_after && data[start..end].eq_ignore_ascii_case(PATTERN) {
            n += 1;
        }
    }
    n
}

/// The start of the HTTP/2 connection preface (`PRI * HTTP/2.0`).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

impl<T: AsyncWrite + Unpin> SniffIo<T> {
    /// Write the HTTP/2 refusal, then report end of stream to hyper.
    fn poll_preface_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((bytes, written)) = &mut self.preface_refusal {
            while *written < bytes.len() {
                match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => *written = bytes.len(),
                    Poll::Ready(Ok(n)) => *written += n,
                    Poll::Pending => return Poll::Pending,
                }
            }
            if Pin::new(&mut self.inner).poll_flush(cx).is_pending() {
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for SniffIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.preface_refusal.is_some() {
            return this.poll_preface_refusal(cx);
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            if buf.filled().len() > before {
                // hyper drops an HTTP/2 client without a word: answer it like any refusal.
                if !this.seen_any && buf.filled()[before..].starts_with(H2_PREFACE) {
                    buf.set_filled(before);
                    let r = Refusal::new(
                        StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                        Layer::Protocol,
                        "http2-not-supported",
                        "this proxy speaks HTTP/1.1 only",
                    );
                    if let Some(hook) = this.sniff.on_refusal.0.get() {
                        hook(&r);
                    }
                    this.preface_refusal = Some((r.to_http1(), 0));
                    return this.poll_preface_refusal(cx);
                }
                this.seen_any = true;
                this.observe(&buf.filled()[before..]);
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SniffIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !this.retrying && this.replacing.is_none() {
            this.classify_write(data);
        }
        if let Some((bytes, written, replaced)) = &mut this.replacing {
            while *written < bytes.len() {
                match Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]) {
                    Poll::Ready(Ok(0)) => {
                        this.replacing = None;
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => *written += n,
                    Poll::Ready(Err(e)) => {
                        this.replacing = None;
                        return Poll::Ready(Err(e));
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            let replaced = *replaced;
            this.replacing = None;
            return Poll::Ready(Ok(replaced));
        }
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        this.retrying = r.is_pending();
        r
    }
    // No vectored writes: every write must be seen whole by `classify_write`.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniffed(chunks: &[&[u8]]) -> Arc<Sniff> {
        let sniff = Arc::new(Sniff::default());
        let mut io = SniffIo::new((), sniff.clone());
        for c in chunks {
            io.observe(c);
        }
        sniff
    }

    fn te_chunked() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(TRANSFER_ENCODING, "chunked".parse().unwrap());
        h
    }

    #[test]
    fn hidden_content_length_is_caught_even_split_across_reads() {
        let s = sniffed(&[
            b"POST / HTTP/1.1\r\nHost: a\r\nConte",
            b"nt-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
        ]);
        assert_eq!(
            s.check(&te_chunked()),
            Err("content-length-with-transfer-encoding")
        );
        let s = sniffed(&[b"POST / HTTP/1.1\r\n", b"CONTENT-LENGTH: 4\r\n"]);
        assert!(s.check(&te_chunked()).is_err());
        let s = sniffed(&[b"POST / HTTP/1.1\r", b"\n", b"content-length: 4\r\n"]);
        assert!(s.check(&te_chunked()).is_err());
    }

    #[test]
    fn plain_chunked_and_plain_length_pass() {
        let s = sniffed(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"]);
        assert_eq!(s.check(&te_chunked()), Ok(()));
        let s = sniffed(&[b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"]);
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, "3".parse().unwrap());
        assert_eq!(s.check(&h), Ok(()));
        // A later chunked request on the same connection is fine.
        assert_eq!(s.check(&te_chunked()), Ok(()));
    }

    #[test]
    fn obfuscated_transfer_encoding_refused() {
        let s = Sniff::default();
        for v in [
            "gzip, chunked",
            "chunked, identity",
            "xchunked",
            "chunked;q=1",
        ] {
            let mut h = HeaderMap::new();
            h.insert(TRANSFER_ENCODING, v.parse().unwrap());
            assert!(s.check(&h).is_err(), "{v}");
        }
        let mut h = te_chunked();
        h.append(TRANSFER_ENCODING, "chunked".parse().unwrap());
        assert_eq!(s.check(&h), Err("multiple-transfer-encoding"));
    }

    #[test]
    fn framing_header_lookalikes_refused() {
        for name in ["transfer_encoding", "content_length", "transfer-encoding_"] {
            let mut h = HeaderMap::new();
            h.insert(
                http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "chunked".parse().unwrap(),
            );
            let expect = if name.ends_with('_') {
                Ok(())
            } else {
                Err("framing-header-lookalike")
            };
            assert_eq!(Sniff::default().check(&h), expect, "{name}");
        }
    }

    #[test]
    fn repeated_or_listed_content_length_refused() {
        let s = Sniff::default();
        let mut h = HeaderMap::new();
        h.append(CONTENT_LENGTH, "5".parse().unwrap());
        h.append(CONTENT_LENGTH, "5".parse().unwrap());
        assert_eq!(s.check(&h), Err("multiple-content-length"));
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, "5, 5".parse().unwrap());
        assert_eq!(s.check(&h), Err("malformed-content-length"));
    }

    const HYPER_400: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 16:00:00 GMT\r\n\r\n";

    async fn written(sniff: Arc<Sniff>, data: &[u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = SniffIo::new(a, sniff);
        let data = data.to_vec();
        let writer = tokio::spawn(async move {
            io.write_all(&data).await.unwrap();
            drop(io);
        });
        let mut out = String::new();
        b.read_to_string(&mut out).await.unwrap();
        // The duplex is smaller than the refusal: the replacement is written across writes.
        writer.await.unwrap();
        out
    }

    #[tokio::test]
    async fn hyper_error_answer_is_replaced_with_an_explained_refusal() {
        let out = written(Arc::new(Sniff::default()), HYPER_400).await;
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(
            out.contains("x-bot-bottle-refusal: layer=protocol; rule=malformed-request"),
            "{out}"
        );
        assert!(out.contains("\r\n\r\nbot-bottle egress refused this request\nlayer: protocol\n"));
        let big = String::from_utf8_lossy(HYPER_400)
            .replace("400 Bad Request", "431 Request Header Fields Too Large");
        let out = written(Arc::new(Sniff::default()), big.as_bytes()).await;
        assert!(
            out.contains("layer=limit; rule=request-head-too-large"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn replaced_answers_are_reported() {
        let sniff = Arc::new(Sniff::default());
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        sniff.on_refusal(move |r| seen2.lock().unwrap().push(r.rule.clone()));
        let _ = written(sniff, HYPER_400).await;
        assert_eq!(*seen.lock().unwrap(), ["malformed-request"]);
    }

    #[tokio::test]
    async fn http2_preface_is_answered_then_ended() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = SniffIo::new(a, Arc::new(Sniff::default()));
        b.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let n = io.read_to_end(&mut got).await.unwrap();
            drop(io);
            (n, got)
        });
        // The reader finishes (and drops its end) once the refusal is written.
        let mut answer = Vec::new();
        b.read_to_end(&mut answer).await.unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 505 "), "{text}");
        assert!(text.contains("rule=http2-not-supported"), "{text}");
        // hyper sees nothing of the preface: an empty stream.
        let (n, got) = reader.await.unwrap();
        assert_eq!((n, got.len()), (0, 0));
    }

    #[tokio::test]
    async fn answers_to_served_requests_pass_untouched() {
        let sniff = Arc::new(Sniff::default());
        assert!(sniff.check(&HeaderMap::new()).is_ok());
        // An upstream's own bare 400, relayed for a request the service saw.
        assert_eq!(
            written(sniff.clone(), HYPER_400).await.as_bytes(),
            HYPER_400
        );
        // Body bytes and `100 Continue` are never touched.
        let cont = b"HTTP/1.1 100 Continue\r\n\r\n";
        assert_eq!(written(sniff.clone(), cont).await.as_bytes(), cont);
        // A final head behind `100 Continue` in one buffer settles what is owed.
        assert!(sniff.check(&HeaderMap::new()).is_ok());
        let both = [&cont[..], HYPER_400].concat();
        assert_eq!(written(sniff.clone(), &both).await.as_bytes(), both);
        let replaced = written(sniff.clone(), HYPER_400).await;
        assert!(replaced.contains("rule=malformed-request"), "{replaced}");
        assert_eq!(
            written(sniff, b"plain body bytes").await,
            "plain body bytes"
        );
    }

    fn whole_count(data: &[u8]) -> u64 {
        count_lines(data, data.len(), 0)
    }

    proptest::proptest! {
        #[test]
        fn split_reads_count_like_one_read(
            parts in proptest::collection::vec(
                proptest::sample::select(vec!["\r\n", "\n", "Content-Length: 1", "content-", "LENGTH", "x", "Transfer-Encoding"]),
                0..40,
            ),
            cuts in proptest::collection::vec(0usize..64, 0..10),
        ) {
            let data: Vec<u8> = parts.concat().into_bytes();
            let sniff = Arc::new(Sniff::default());
            let mut io = SniffIo::new((), sniff.clone());
            let mut at = 0;
            for c in cuts {
                let end = (at + c).min(data.len());
                io.observe(&data[at..end]);
                at = end;
            }
            io.observe(&data[at..]);
            proptest::prop_assert_eq!(sniff.raw_cl_lines.load(Ordering::Relaxed), whole_count(&data));
        }
    }
}
