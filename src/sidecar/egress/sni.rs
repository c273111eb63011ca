//! Read the TLS ClientHello of a passthrough tunnel without terminating TLS.
//!
//! A passthrough route is a plain tunnel, but the name the client asks for in its ClientHello
//! (SNI) must still be the CONNECT host: otherwise a tunnel to an allowed host on a shared
//! front end (a CDN) could reach any other site behind it. The bytes read are kept so they can
//! be relayed to the upstream unchanged once the name is checked.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest ClientHello accepted (TLS allows 16 KiB records; post-quantum key shares are big).
const MAX_HELLO: usize = 64 * 1024;

/// The start of a TLS connection as the client sent it.
#[derive(Debug)]
pub(crate) struct ClientHello {
    /// Every byte read so far, to relay before tunnelling the rest.
    pub raw: Vec<u8>,
    /// The SNI host name, if the client sent one.
    pub(crate) server_name: Option<String>,
}

/// Why no ClientHello could be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HelloError {
    #[error("the client did not start a TLS handshake: {0}")]
    NotTls(String),
    #[error("the client closed the tunnel before its TLS ClientHello was complete")]
    Closed,
    #[error("no TLS ClientHello within the handshake timeout")]
    Timeout,
    #[error("the TLS ClientHello is larger than {MAX_HELLO} bytes")]
    TooLarge,
}

/// Read until a complete ClientHello is parsed (bounded in size and time).
pub(crate) async fn read_client_hello<S: AsyncRead + Unpin>(
    io: &mut S,
    timeout: Duration,
) -> Result<ClientHello, HelloError> {
    tokio::time::timeout(timeout, read_hello(io))
        .await
        .map_err(|_| HelloError::Timeout)?
}

async fn read_hello<S: AsyncRead + Unpin>(io: &mut S) -> Result<ClientHello, HelloError> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut raw = Vec::with_capacity(2048);
    let mut buf = [0u8; 4096];
    loop {
        let n = io.read(&mut buf).await.map_err(|_| HelloError::Closed)?;
        if n == 0 {
            return Err(HelloError::Closed);
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > MAX_HELLO {
            return Err(HelloError::TooLarge);
        }
        let mut rest: &[u8] = &buf[..n];
        while !rest.is_empty() {
            acceptor
                .read_tls(&mut rest)
                .map_err(|e| HelloError::NotTls(e.to_string()))?;
            match acceptor.accept() {
                Ok(Some(accepted)) => {
                    let server_name = accepted.client_hello().server_name().map(str::to_string);
                    return Ok(ClientHello { raw, server_name });
                }
                Ok(None) => {}
                Err((e, _alert)) => return Err(HelloError::NotTls(e.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt;

    /// The first bytes a real client sends for `name`.
    async fn hello_bytes(name: &str) -> Vec<u8> {
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let handshake = tokio::spawn(async move { connector.connect(name, a).await.is_ok() });
        let mut out = vec![0u8; 1 << 16];
        let n = b.read(&mut out).await.unwrap();
        out.truncate(n);
        drop(b);
        let _ = handshake.await;
        out
    }

    #[tokio::test]
    async fn sni_is_read_and_bytes_are_kept() {
        let bytes = hello_bytes("pass.test").await;
        // Fed in small pieces, as a slow client would.
        let (mut w, mut r) = tokio::io::duplex(64);
        let feed = bytes.clone();
        tokio::spawn(async move {
            for chunk in feed.chunks(7) {
                w.write_all(chunk).await.unwrap();
            }
            std::future::pending::<()>().await;
        });
        let hello = read_client_hello(&mut r, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(hello.server_name.as_deref(), Some("pass.test"));
        assert_eq!(hello.raw, bytes);
    }

    #[tokio::test]
    async fn plain_http_is_not_a_hello() {
        let mut data: &[u8] = b"GET / HTTP/1.1\r\nHost: pass.test\r\n\r\n";
        let err = read_client_hello(&mut data, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, HelloError::NotTls(_)), "{err}");
        let mut empty: &[u8] = b"";
        assert!(matches!(
            read_client_hello(&mut empty, Duration::from_secs(5)).await,
            Err(HelloError::Closed)
        ));
    }
}
