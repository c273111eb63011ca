//! Lingering close: a client connection egress is done with is half-closed and drained for a
//! bounded time before the socket is closed, so the client reads the last answer (often a
//! refusal) instead of a reset.
//!
//! Closing a socket while the client is still sending makes the kernel answer with a reset,
//! and a reset can destroy an answer the client has not read yet: the client's write fails
//! and it gives up, gVisor's netstack drops what was queued, and the agent's relay stops
//! copying both ways when its write to egress fails, before the answer is passed on (decision
//! 0043). So when egress drops a connection the client has not finished, [`LingerIo`] shuts
//! down the write side (the answer is followed by a FIN) and reads and discards what still
//! arrives until the client closes too, or [`LINGER_TIME`] or [`LINGER_BYTES`] is reached; at
//! most [`LINGER_SOCKETS`] sockets linger at once, past that a socket is closed at once as
//! before. Bytes read here are never parsed or forwarded.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Semaphore;

/// Longest a closed connection is drained.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(2);
/// Most bytes read and discarded from one closed connection.
pub(crate) const LINGER_BYTES: u64 = 1 << 20;
/// Most connections lingering at once (each holds a descriptor past its connection limit).
pub(crate) const LINGER_SOCKETS: usize = 256;

/// A client stream that lingers when dropped before its peer finished sending.
pub(crate) struct LingerIo<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    inner: Option<T>,
    /// The peer ended its side (EOF) or the stream broke: nothing can be in flight.
    peer_done: bool,
    slots: Arc<Semaphore>,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> LingerIo<T> {
    /// `slots` bounds how many streams linger at once (shared by the daemon).
    pub(crate) fn new(inner: T, slots: Arc<Semaphore>) -> Self {
        LingerIo {
            inner: Some(inner),
            peer_done: false,
            slots,
        }
    }

    fn inner(&mut self) -> io::Result<&mut T> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

/// A new semaphore with [`LINGER_SOCKETS`] slots.
pub(crate) fn slots() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(LINGER_SOCKETS))
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for LingerIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let room = buf.remaining() > 0;
        let before = buf.filled().len();
        let r = Pin::new(this.inner()?).poll_read(cx, buf);
        match &r {
            Poll::Ready(Ok(())) if room && buf.filled().len() == before => this.peer_done = true,
            Poll::Ready(Err(_)) => this.peer_done = true,
            _ => {}
        }
        r
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for LingerIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(this.inner()?).poll_write(cx, data);
        if let Poll::Ready(Err(_)) = &r {
            this.peer_done = true;
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(this.inner()?).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Err(_)) = &r {
            this.peer_done = true;
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.inner()?).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.inner()?).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for LingerIo<T> {
    fn drop(&mut self) {
        let Some(io) = self.inner.take() else {
            return;
        };
        if self.peer_done {
            return;
        }
        // No runtime (shutting down) or too many lingering already: close at once.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return;
        };
        rt.spawn(async move {
            drain(io, LINGER_TIME, LINGER_BYTES).await;
            drop(slot);
        });
    }
}

/// Half-close, then read and discard until the peer closes or a bound is reached.
async fn drain<T: AsyncRead + AsyncWrite + Unpin>(mut io: T, time: Duration, bytes: u64) {
    let _ = tokio::time::timeout(time, async {
        // The answer is followed by a FIN: the client's reader ends instead of waiting.
        let _ = io.shutdown().await;
        let mut buf = [0u8; 8192];
        let mut left = bytes;
        while left > 0 {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n as u64),
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_stream_is_half_closed_and_drained_until_the_peer_closes() {
        let (a, mut b) = tokio::io::duplex(64);
        let slots = slots();
        let mut io = LingerIo::new(a, slots.clone());
        io.write_all(b"answer").await.unwrap();
        drop(io);
        // The peer reads the answer and then an end of stream, while it can still write.
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"answer");
        b.write_all(&[b'x'; 4096]).await.unwrap();
        assert_eq!(slots.available_permits(), LINGER_SOCKETS - 1);
        drop(b);
        // The drain sees the peer's end and gives the slot back.
        for _ in 0..100 {
            if slots.available_permits() == LINGER_SOCKETS {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the lingering stream never closed");
    }

    #[tokio::test]
    async fn a_peer_that_already_ended_is_closed_at_once() {
        let (a, b) = tokio::io::duplex(64);
        let slots = slots();
        let mut io = LingerIo::new(a, slots.clone());
        drop(b);
        let mut buf = [0u8; 8];
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
        drop(io);
        assert_eq!(slots.available_permits(), LINGER_SOCKETS);
    }

    #[tokio::test]
    async fn a_peer_that_keeps_sending_is_cut_off_by_the_bounds() {
        // More than the byte bound: the drain stops reading and closes.
        let (a, mut b) = tokio::io::duplex(1024);
        let drained = tokio::spawn(drain(a, Duration::from_secs(60), 8 * 1024));
        let mut sent = 0usize;
        while b.write_all(&[b'x'; 1024]).await.is_ok() {
            sent += 1024;
            assert!(sent <= 64 * 1024, "never cut off");
        }
        assert!(sent >= 8 * 1024, "cut off after {sent} bytes");
        drained.await.unwrap();
        // A silent peer: the time bound.
        let (a, _b) = tokio::io::duplex(64);
        tokio::time::timeout(
            Duration::from_secs(20),
            drain(a, Duration::from_millis(50), LINGER_BYTES),
        )
        .await
        .expect("the time bound ends the drain");
    }
}
