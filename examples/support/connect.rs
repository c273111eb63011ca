//! The CONNECT handshake the bench clients share.

use anyhow::bail;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Ask the proxy on `s` for a tunnel to `target` (`host:port`) and read its answer head,
/// byte by byte so nothing of the tunnel is consumed.
pub(crate) async fn connect_tunnel(s: &mut TcpStream, target: &str) -> anyhow::Result<()> {
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await? == 0 {
            bail!("proxy closed during CONNECT");
        }
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
        bail!("CONNECT refused: {}", String::from_utf8_lossy(&head));
    }
    Ok(())
}
