//! Request-smuggling guard (CL+TE, obfuscated Transfer-Encoding).
//!
//! hyper reads a request carrying both `Content-Length` and `Transfer-Encoding` as chunked,
//! drops the `Content-Length` header and closes the connection afterwards, so the service can no
//! longer see the conflict. [`SniffIo`] counts `Content-Length` header lines on the raw inbound
//! bytes; a request with `Transfer-Encoding` arriving while more such lines were read than
//! requests showed is refused with 400. Pipelined clients may see a false refusal; no request
//! is ever split in two.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use http::HeaderMap;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PATTERN: &[u8] = b"content-length";

/// Per-connection counters shared between the IO wrapper and the request handler.
#[derive(Debug, Default)]
pub struct Sniff {
    raw_cl_lines: AtomicU64,
    cl_headers_seen: AtomicU64,
}

impl Sniff {
    /// Decide on one request head. `Err` carries the rule that makes it a 400.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let has_cl = headers.contains_key(CONTENT_LENGTH);
        if has_cl {
            self.cl_headers_seen.fetch_add(1, Ordering::Relaxed);
        }
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
}

/// Counts `\nContent-Length` (any case) in what the client sends.
pub struct SniffIo<T> {
    inner: T,
    sniff: Arc<Sniff>,
    /// The last bytes of the previous read, so a line split across reads is still seen.
    tail: [u8; 16],
    tail_len: usize,
}

impl<T> SniffIo<T> {
    pub fn new(inner: T, sniff: Arc<Sniff>) -> Self {
        SniffIo {
            inner,
            sniff,
            tail: [0; 16],
            tail_len: 0,
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

impl<T: AsyncRead + Unpin> AsyncRead for SniffIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let this = &mut *self;
            if buf.filled().len() > before {
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
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
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
