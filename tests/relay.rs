//! The loopback relay with real TCP and unix sockets: round trips, half-close, fail closed on a
//! missing socket, the connection bound, the reverse direction and the binary itself.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bot_bottle::sidecar::relay::{Forward, Relay, RelayConfig, RelayError, parse_args};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::oneshot;

const RELAY: &str = env!("CARGO_BIN_EXE_bot-bottle-relay");
/// Hang guard for reads that must finish (not a timing assertion).
const GUARD: Duration = Duration::from_secs(20);

/// A relay running in the background until the returned sender is dropped or fired.
async fn start(
    config: RelayConfig,
) -> (
    Vec<Forward>,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let relay = Relay::bind(&config).await.unwrap();
    let forwards = relay.forwards();
    let (tx, rx) = oneshot::channel::<()>();
    let h = tokio::spawn(relay.run(async {
        let _ = rx.await;
    }));
    (forwards, tx, h)
}

fn tcp_addr(f: &Forward) -> SocketAddr {
    match f {
        Forward::TcpToUnix { listen, .. } => *listen,
        Forward::UnixToTcp { .. } => panic!("not a tcp listener"),
    }
}

fn tcp_to_unix(sock: &Path) -> RelayConfig {
    parse_args([format!("127.0.0.1:0={}", sock.display())]).unwrap()
}

/// Serves one behaviour per accepted unix connection: read to EOF, then reply
/// `got <n> bytes` and close (proves the client's half-close arrived).
async fn unix_counting_server(path: PathBuf) -> tokio::task::JoinHandle<()> {
    let l = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                s.read_to_end(&mut buf).await.unwrap();
                s.write_all(format!("got {} bytes", buf.len()).as_bytes())
                    .await
                    .unwrap();
                s.shutdown().await.unwrap();
            });
        }
    })
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let (mut r, mut w) = tokio::io::split(&mut s);
    let _ = tokio::io::copy(&mut r, &mut w).await;
    let _ = w.shutdown().await;
}

async fn read_all<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(GUARD, s.read_to_end(&mut out))
        .await
        .expect("read did not finish")
        .unwrap_or_default();
    out
}

#[tokio::test]
async fn tcp_to_unix_round_trip_with_half_close() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("egress.sock");
    let _server = unix_counting_server(sock.clone()).await;
    let (fw, _stop, _h) = start(tcp_to_unix(&sock)).await;

    let mut c = TcpStream::connect(tcp_addr(&fw[0])).await.unwrap();
    c.write_all(&vec![7u8; 100_000]).await.unwrap();
    // Half-close: the server only answers after it saw our EOF through the relay, and
    // the answer must still flow back on the open direction.
    c.shutdown().await.unwrap();
    assert_eq!(read_all(&mut c).await, b"got 100000 bytes");
}

#[tokio::test]
async fn large_payloads_survive_both_directions_through_a_relay_chain() {
    // agent side TCP -> unix socket -> bundle side relay -> TCP echo server
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("chain.sock");
    let echo_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo_l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = echo_l.accept().await {
            tokio::spawn(echo(s));
        }
    });
    let bundle = parse_args([
        "--unix-to-tcp".to_string(),
        format!("{}={echo_addr}", sock.display()),
    ])
    .unwrap();
    let (_bfw, _bstop, _bh) = start(bundle).await;
    let (fw, _stop, _h) = start(tcp_to_unix(&sock)).await;

    let payload: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let c = TcpStream::connect(tcp_addr(&fw[0])).await.unwrap();
    let (mut r, mut w) = c.into_split();
    let to_send = payload.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&to_send).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let got = read_all(&mut r).await;
    writer.await.unwrap();
    assert_eq!(got.len(), payload.len());
    assert!(got == payload, "payload corrupted");
}

#[tokio::test]
async fn a_missing_socket_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("absent.sock");
    let (fw, _stop, _h) = start(tcp_to_unix(&sock)).await;
    let mut c = TcpStream::connect(tcp_addr(&fw[0])).await.unwrap();
    let _ = c
        .write_all(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n")
        .await;
    assert!(
        read_all(&mut c).await.is_empty(),
        "got bytes with no socket behind the relay"
    );

    // Once the socket appears, new connections go through (nothing cached).
    let _server = unix_counting_server(sock.clone()).await;
    let mut c = TcpStream::connect(tcp_addr(&fw[0])).await.unwrap();
    c.write_all(b"abc").await.unwrap();
    c.shutdown().await.unwrap();
    assert_eq!(read_all(&mut c).await, b"got 3 bytes");
}

#[tokio::test]
async fn connections_over_the_bound_are_closed_and_others_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("held.sock");
    let l = UnixListener::bind(&sock).unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(echo(s));
        }
    });
    let config = parse_args([
        "--max-connections".to_string(),
        "2".to_string(),
        format!("127.0.0.1:0={}", sock.display()),
    ])
    .unwrap();
    let (fw, _stop, _h) = start(config).await;
    let addr = tcp_addr(&fw[0]);

    let mut held = Vec::new();
    for i in 0..2u8 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&[i]).await.unwrap();
        let mut b = [0u8; 1];
        tokio::time::timeout(GUARD, c.read_exact(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b[0], i);
        held.push(c);
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    let _ = third.write_all(b"x").await;
    assert!(
        read_all(&mut third).await.is_empty(),
        "third connection was relayed"
    );

    // the held ones still work
    held[0].write_all(b"z").await.unwrap();
    let mut b = [0u8; 1];
    held[0].read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"z");

    // closing one frees a slot
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let mut c = TcpStream::connect(addr).await.unwrap();
        let _ = c.write_all(b"q").await;
        let mut b = [0u8; 1];
        if tokio::time::timeout(Duration::from_secs(2), c.read_exact(&mut b))
            .await
            .is_ok_and(|r| r.is_ok())
        {
            assert_eq!(&b, b"q");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn unix_listener_replaces_stale_sockets_only_and_is_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("egress.sock");
    // a stale socket from a previous run
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let config = parse_args([
        "--unix-to-tcp".to_string(),
        format!("{}=127.0.0.1:9", sock.display()),
    ])
    .unwrap();
    let (_fw, stop, h) = start(config.clone()).await;
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o666);
    // nothing listens on port 9 (discard): the client is closed, not hung
    let mut c = UnixStream::connect(&sock).await.unwrap();
    assert!(read_all(&mut c).await.is_empty());
    stop.send(()).unwrap();
    h.await.unwrap();
    assert!(!sock.exists(), "socket left behind after shutdown");

    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "data").unwrap();
    let config = parse_args([
        "--unix-to-tcp".to_string(),
        format!("{}=127.0.0.1:9", file.display()),
    ])
    .unwrap();
    assert!(matches!(
        Relay::bind(&config).await,
        Err(RelayError::NotASocket { .. })
    ));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");
}

#[tokio::test]
async fn a_taken_port_is_a_bind_error() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = parse_args([format!("{port}=/tmp/x.sock")]).unwrap();
    let err = Relay::bind(&config).await.err().expect("bind succeeded");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}

#[test]
fn the_binary_relays_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("git.sock");
    let server = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let back = dir.path().join("back.sock");
    let mut child = Command::new(RELAY)
        .arg(format!("127.0.0.1:0={}", sock.display()))
        .arg("--unix-to-tcp")
        .arg(format!("{}=127.0.0.1:9", back.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addr: Option<SocketAddr> = None;
    for _ in 0..2 {
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        assert!(line.starts_with("bot-bottle-relay: listening "), "{line}");
        if let Some(a) = line
            .trim()
            .strip_prefix("bot-bottle-relay: listening ")
            .and_then(|r| r.split(" -> ").next())
            .and_then(|a| a.parse().ok())
        {
            addr = Some(a);
        }
    }
    let addr = addr.expect("no tcp listener announced");
    assert!(back.exists());

    let handle = std::thread::spawn(move || {
        let (mut s, _) = server.accept().unwrap();
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut s, &mut buf).unwrap();
        std::io::Write::write_all(&mut s, &buf).unwrap();
    });
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(GUARD)).unwrap();
    std::io::Write::write_all(&mut c, b"ping").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut c, &mut got).unwrap();
    assert_eq!(got, b"ping");
    handle.join().unwrap();

    let pid = libc::pid_t::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!back.exists(), "reverse socket not removed on exit");
}

#[test]
fn the_binary_rejects_bad_arguments_with_usage_hint() {
    let out = Command::new(RELAY).arg("9099").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PORT=/path/to.sock"), "{err}");
    let out = Command::new(RELAY).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}
