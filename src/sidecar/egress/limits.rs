//! Bounds on what a client may send and how long it may take.
//!
//! Every limit is configurable by flag; the defaults keep a hostile or broken client from
//! holding memory or connections: header size and count, buffered body size, time to send a
//! request head, idle time on a connection, concurrent connections.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Configurable bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (hyper's read buffer; at least 8 KiB).
    pub max_header_bytes: usize,
    /// Most headers in one request.
    pub max_headers: usize,
    /// Largest request body, buffered and scanned whole; also the bound for decompression.
    pub max_body_bytes: usize,
    /// Time allowed to send one request head.
    pub header_timeout: Duration,
    /// Time a connection may stay silent in both directions.
    pub idle_timeout: Duration,
    /// Time allowed for a TLS handshake with the agent.
    pub handshake_timeout: Duration,
    /// Most concurrent client connections.
    pub max_connections: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_header_bytes: 64 * 1024,
        max_headers: 100,
        max_body_bytes: 32 * 1024 * 1024,
        header_timeout: Duration::from_secs(15),
        idle_timeout: Duration::from_secs(300),
        handshake_timeout: Duration::from_secs(15),
        max_connections: 1024,
    };

    /// hyper refuses a read buffer smaller than 8 KiB.
    pub(crate) fn hyper_buf_size(&self) -> usize {
        self.max_header_bytes.max(8192)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Closes a stream (with `TimedOut`) once nothing was read or written for `timeout`.
///
/// The timer is re-armed only when it fires, so the hot path costs one clock read.
pub(crate) struct IdleIo<T> {
    inner: T,
    timeout: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<T> IdleIo<T> {
    pub(crate) fn new(inner: T, timeout: Duration) -> Self {
        let now = Instant::now();
        IdleIo {
            inner,
            timeout,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(now + timeout)),
        }
    }

    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let due = self.last + self.timeout;
            if Instant::now() >= due {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle too long",
                ));
            }
            self.timer.as_mut().reset(due);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.last = Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(r) => {
                this.last = Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                this.last = Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn silent_stream_times_out() {
        let (a, _b) = tokio::io::duplex(64);
        let mut io = IdleIo::new(a, Duration::from_millis(100));
        let mut buf = [0u8; 8];
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn activity_keeps_stream_open() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = IdleIo::new(a, Duration::from_millis(600));
        let writer = tokio::spawn(async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                b.write_all(b"x").await.unwrap();
            }
            b
        });
        let mut buf = [0u8; 1];
        for _ in 0..4 {
            io.read_exact(&mut buf).await.unwrap();
        }
        drop(writer.await.unwrap());
    }
}
