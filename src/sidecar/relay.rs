//! A tiny byte relay between loopback TCP and unix sockets.
//!
//! The agent container runs with no network at all (only `lo`). Its way to the sidecar
//! bundle is a per-bottle volume holding the bundle's unix sockets; this relay, inside the
//! agent, listens on `127.0.0.1:<port>` (what `HTTPS_PROXY` and git URLs point at) and
//! forwards each connection to a socket. When a socket is missing the connection is simply
//! closed: no fallback, no retry elsewhere (fail closed).
//!
//! The reverse direction (`--unix-to-tcp`) runs on the bundle side for a daemon that can only
//! listen on TCP: it listens on the socket in the shared volume and connects to `host:port`.
//!
//! Argument grammar (see [`parse_args`]):
//! - `PORT=SOCKET` or `IP:PORT=SOCKET`: TCP listener (127.0.0.1 by default) → unix socket.
//! - `--unix-to-tcp SOCKET=HOST:PORT`: unix listener → TCP.
//! - `--max-connections N`: concurrent connections over all forwards (default
//!   [`DEFAULT_MAX_CONNECTIONS`]); extra connections are closed at once.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Default bound on concurrent relayed connections.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// How long connecting to the target may take before the client is dropped.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Mode of sockets the relay creates: both containers' users must be able to connect; the
/// volume holding them is private to one bottle.
pub const SOCKET_MODE: u32 = 0o666;

/// One listener and where its connections go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forward {
    /// Agent side: TCP listener → unix socket.
    TcpToUnix { listen: SocketAddr, socket: PathBuf },
    /// Bundle side: unix listener → TCP `host:port`.
    UnixToTcp { socket: PathBuf, target: String },
}

impl std::fmt::Display for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Forward::TcpToUnix { listen, socket } => {
                write!(f, "{listen} -> {}", socket.display())
            }
            Forward::UnixToTcp { socket, target } => {
                write!(f, "{} -> {target}", socket.display())
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    pub forwards: Vec<Forward>,
    pub max_connections: usize,
}

#[derive(thiserror::Error, Debug)]
pub enum RelayError {
    #[error(
        "invalid forward `{arg}`: {reason}; use `PORT=/path/to.sock`, `IP:PORT=/path/to.sock` or `--unix-to-tcp /path/to.sock=HOST:PORT`"
    )]
    BadForward { arg: String, reason: String },
    #[error("invalid option `{arg}`; see `bot-bottle-relay --help`")]
    BadOption { arg: String },
    #[error("nothing to relay; pass at least one `PORT=/path/to.sock`")]
    NoForwards,
    #[error("cannot listen on {what}: {source}; is another process using it?")]
    Bind {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{} exists and is not a socket; remove it or choose another path", .path.display())]
    NotASocket { path: PathBuf },
}

/// Usage text for `--help`.
pub const USAGE: &str = "usage: bot-bottle-relay [--max-connections N] [PORT=SOCKET | IP:PORT=SOCKET]... [--unix-to-tcp SOCKET=HOST:PORT]...";

fn bad(arg: &str, reason: &str) -> RelayError {
    RelayError::BadForward {
        arg: arg.to_string(),
        reason: reason.to_string(),
    }
}

fn parse_socket_path(arg: &str, s: &str) -> Result<PathBuf, RelayError> {
    let p = PathBuf::from(s);
    if !p.is_absolute() {
        return Err(bad(arg, "the socket path must be absolute"));
    }
    // sun_path holds 108 bytes including the terminating NUL.
    if s.len() > 107 {
        return Err(bad(arg, "the socket path is longer than 107 bytes"));
    }
    Ok(p)
}

fn parse_tcp_to_unix(arg: &str) -> Result<Forward, RelayError> {
    let (left, right) = arg.split_once('=').ok_or_else(|| bad(arg, "missing `=`"))?;
    let listen = if let Ok(port) = left.parse::<u16>() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    } else {
        left.parse::<SocketAddr>()
            .map_err(|_| bad(arg, "the listen side must be a port or IP:PORT"))?
    };
    Ok(Forward::TcpToUnix {
        listen,
        socket: parse_socket_path(arg, right)?,
    })
}

fn parse_unix_to_tcp(arg: &str) -> Result<Forward, RelayError> {
    let (left, right) = arg.split_once('=').ok_or_else(|| bad(arg, "missing `=`"))?;
    let (host, port) = right
        .rsplit_once(':')
        .ok_or_else(|| bad(arg, "the target must be HOST:PORT"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad(arg, "the target must be HOST:PORT"));
    }
    Ok(Forward::UnixToTcp {
        socket: parse_socket_path(arg, left)?,
        target: right.to_string(),
    })
}

/// Parses the relay's arguments (without the program name).
pub fn parse_args<I, S>(args: I) -> Result<RelayConfig, RelayError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut forwards = Vec::new();
    let mut max_connections = DEFAULT_MAX_CONNECTIONS;
    let mut it = args.into_iter().map(Into::into);
    while let Some(arg) = it.next() {
        if let Some(v) = arg.strip_prefix("--unix-to-tcp=") {
            forwards.push(parse_unix_to_tcp(v)?);
        } else if arg == "--unix-to-tcp" {
            let v = it
                .next()
                .ok_or(RelayError::BadOption { arg: arg.clone() })?;
            forwards.push(parse_unix_to_tcp(&v)?);
        } else if let Some(v) = arg.strip_prefix("--max-connections=") {
            max_connections = parse_max(&arg, v)?;
        } else if arg == "--max-connections" {
            let v = it
                .next()
                .ok_or(RelayError::BadOption { arg: arg.clone() })?;
            max_connections = parse_max(&arg, &v)?;
        } else if arg.starts_with('-') {
            return Err(RelayError::BadOption { arg });
        } else {
            forwards.push(parse_tcp_to_unix(&arg)?);
        }
    }
    if forwards.is_empty() {
        return Err(RelayError::NoForwards);
    }
    Ok(RelayConfig {
        forwards,
        max_connections,
    })
}

fn parse_max(arg: &str, v: &str) -> Result<usize, RelayError> {
    v.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or(RelayError::BadOption {
            arg: format!("{arg} {v}"),
        })
}

enum Listener {
    Tcp(TcpListener, PathBuf),
    Unix(UnixListener, PathBuf, String),
}

/// Bound listeners, ready to [`Relay::run`].
pub struct Relay {
    listeners: Vec<Listener>,
    limit: Arc<Semaphore>,
}

/// Binds a unix socket, replacing a stale socket file but never any other file.
fn bind_unix(path: &Path) -> Result<UnixListener, RelayError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            let _ = std::fs::remove_file(path);
        }
        Ok(_) => {
            return Err(RelayError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Err(_) => {}
    }
    let what = || path.display().to_string();
    let l = UnixListener::bind(path).map_err(|source| RelayError::Bind {
        what: what(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(
        |source| RelayError::Bind {
            what: what(),
            source,
        },
    )?;
    Ok(l)
}

impl Relay {
    /// Binds every listener (so errors surface before serving).
    pub async fn bind(config: &RelayConfig) -> Result<Relay, RelayError> {
        let mut listeners = Vec::new();
        for f in &config.forwards {
            match f {
                Forward::TcpToUnix { listen, socket } => {
                    let l = TcpListener::bind(listen)
                        .await
                        .map_err(|source| RelayError::Bind {
                            what: listen.to_string(),
                            source,
                        })?;
                    listeners.push(Listener::Tcp(l, socket.clone()));
                }
                Forward::UnixToTcp { socket, target } => {
                    listeners.push(Listener::Unix(
                        bind_unix(socket)?,
                        socket.clone(),
                        target.clone(),
                    ));
                }
            }
        }
        Ok(Relay {
            listeners,
            limit: Arc::new(Semaphore::new(config.max_connections)),
        })
    }

    /// The bound forwards, with real ports (useful when a port was 0).
    pub fn forwards(&self) -> Vec<Forward> {
        self.listeners
            .iter()
            .map(|l| match l {
                Listener::Tcp(t, socket) => Forward::TcpToUnix {
                    listen: t
                        .local_addr()
                        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
                    socket: socket.clone(),
                },
                Listener::Unix(_, socket, target) => Forward::UnixToTcp {
                    socket: socket.clone(),
                    target: target.clone(),
                },
            })
            .collect()
    }

    /// Serves until `shutdown` completes; then drops every connection and removes the unix
    /// sockets it created.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut tasks = JoinSet::new();
        let mut created = Vec::new();
        for l in self.listeners {
            let limit = self.limit.clone();
            match l {
                Listener::Tcp(t, socket) => {
                    tasks.spawn(accept_tcp(t, socket, limit));
                }
                Listener::Unix(u, socket, target) => {
                    created.push(socket.clone());
                    tasks.spawn(accept_unix(u, target, limit));
                }
            }
        }
        shutdown.await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        for p in created {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Runs the accept loop of a TCP listener; each connection goes to `socket`.
async fn accept_tcp(listener: TcpListener, socket: PathBuf, limit: Arc<Semaphore>) {
    let mut conns = JoinSet::new();
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing");
            continue;
        };
        let socket = socket.clone();
        conns.spawn(async move {
            let _permit = permit;
            let _ = client.set_nodelay(true);
            let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(&socket))
                .await
            {
                Ok(Ok(u)) => u,
                Ok(Err(e)) => {
                    tracing::warn!(socket = %socket.display(), "unreachable, closing client: {e}");
                    return;
                }
                Err(_) => {
                    tracing::warn!(socket = %socket.display(), "connect timed out, closing client");
                    return;
                }
            };
            pipe(client, upstream).await;
        });
        // Reap finished connection tasks so the set does not grow without bound.
        while conns.try_join_next().is_some() {}
    }
}

/// Runs the accept loop of a unix listener; each connection goes to TCP `target`.
async fn accept_unix(listener: UnixListener, target: String, limit: Arc<Semaphore>) {
    let mut conns = JoinSet::new();
    loop {
        let client = match listener.accept().await {
            Ok((c, _)) => c,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!("connection limit reached; closing");
            continue;
        };
        let target = target.clone();
        conns.spawn(async move {
            let _permit = permit;
            let upstream =
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.as_str()))
                    .await
                {
                    Ok(Ok(u)) => u,
                    Ok(Err(e)) => {
                        tracing::warn!(%target, "unreachable, closing client: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%target, "connect timed out, closing client");
                        return;
                    }
                };
            let _ = upstream.set_nodelay(true);
            pipe(client, upstream).await;
        });
        while conns.try_join_next().is_some() {}
    }
}

/// Copies both ways until both sides are done. An EOF on one side becomes a write shutdown
/// on the other (half-close), while the opposite direction keeps flowing.
async fn pipe<A, B>(mut a: A, mut b: B)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::io::copy_bidirectional(&mut a, &mut b).await {
        Ok((up, down)) => tracing::debug!(up, down, "connection closed"),
        Err(e) => tracing::debug!("connection ended: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_directions_and_options() {
        let c = parse_args([
            "9099=/run/bot-bottle/egress.sock",
            "127.0.0.2:9418=/run/bot-bottle/git-gate.sock",
            "--unix-to-tcp",
            "/run/bot-bottle/egress.sock=127.0.0.1:9099",
            "--unix-to-tcp=/run/x.sock=upstream:80",
            "--max-connections",
            "8",
        ])
        .unwrap();
        assert_eq!(c.max_connections, 8);
        assert_eq!(
            c.forwards,
            vec![
                Forward::TcpToUnix {
                    listen: "127.0.0.1:9099".parse().unwrap(),
                    socket: "/run/bot-bottle/egress.sock".into()
                },
                Forward::TcpToUnix {
                    listen: "127.0.0.2:9418".parse().unwrap(),
                    socket: "/run/bot-bottle/git-gate.sock".into()
                },
                Forward::UnixToTcp {
                    socket: "/run/bot-bottle/egress.sock".into(),
                    target: "127.0.0.1:9099".into()
                },
                Forward::UnixToTcp {
                    socket: "/run/x.sock".into(),
                    target: "upstream:80".into()
                },
            ]
        );
    }

    #[test]
    fn rejects_bad_arguments() {
        for bad in [
            vec![],
            vec!["9099"],
            vec!["99999=/x.sock"],
            vec!["9099=relative.sock"],
            vec!["host:9099=/x.sock"],
            vec!["--unix-to-tcp", "/x.sock=nohostport"],
            vec!["--unix-to-tcp", "/x.sock=:80"],
            vec!["--unix-to-tcp"],
            vec!["--max-connections", "0", "1=/x.sock"],
            vec!["--bogus"],
        ] {
            assert!(parse_args(bad.clone()).is_err(), "{bad:?}");
        }
        let long = format!("1=/{}", "a".repeat(120));
        assert!(parse_args([long]).is_err());
    }
}
