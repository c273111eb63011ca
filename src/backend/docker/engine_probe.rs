//! Read-only questions to the container engine that the preflight needs (is gVisor
//! registered?). Answered over the engine's unix socket directly: a `docker info` process
//! costs tens of milliseconds, the socket a few. Any failure means "unknown", never an error:
//! the preflight must work with the engine down.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// Upper bound on the `/info` answer we read; real answers are a few KiB.
const MAX_ANSWER: u64 = 4 * 1024 * 1024;

/// Which socket to ask, from a `DOCKER_HOST` value (`None` = default socket). A TCP engine is
/// not probed (it may be remote and slow): the answer is "unknown".
pub(crate) fn socket_path(docker_host: Option<&str>) -> Option<PathBuf> {
    match docker_host.filter(|h| !h.is_empty()) {
        None => Some(PathBuf::from("/var/run/docker.sock")),
        Some(h) => h.strip_prefix("unix://").map(PathBuf::from),
    }
}

/// What the engine says about gVisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gvisor {
    /// `runsc` is registered and may connect to host unix sockets (the agent's relay needs
    /// that to reach its sidecar bundle): bottles run under gVisor.
    Usable,
    /// `runsc` is registered without `--host-uds=open`/`all`: under it the relay could not
    /// reach the bundle, so bottles run under runc and the preflight says why.
    NoHostUds,
    /// No `runsc` runtime.
    Absent,
}

/// Ask the engine about gVisor; `None` when it cannot be asked.
pub(crate) fn probe_gvisor(docker_host: Option<&str>, timeout: Duration) -> Option<Gvisor> {
    let path = socket_path(docker_host)?;
    let mut stream = UnixStream::connect(path).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    stream
        .write_all(b"GET /info HTTP/1.0\r\nHost: docker\r\n\r\n")
        .ok()?;
    let mut answer = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut answer).ok()?;
    parse_info(&answer)
}

/// Files whose change means the engine's runtimes may have changed: the socket (recreated
/// when the daemon restarts) and the daemon's config (runtimes are registered there; a reload
/// re-reads it).
const DAEMON_CONFIG: &str = "/etc/docker/daemon.json";

fn mtime_ns(path: &std::path::Path) -> Option<u128> {
    let meta = std::fs::metadata(path).ok()?;
    let t = meta.modified().ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos())
}

/// The cache key for a socket: both mtimes (a missing config counts as 0).
fn cache_key(socket: &std::path::Path) -> Option<String> {
    let sock = mtime_ns(socket)?;
    let conf = mtime_ns(std::path::Path::new(DAEMON_CONFIG)).unwrap_or(0);
    Some(format!("{}|{sock}|{conf}", socket.display()))
}

fn encode(g: Gvisor) -> &'static str {
    match g {
        Gvisor::Usable => "usable",
        Gvisor::NoHostUds => "no-host-uds",
        Gvisor::Absent => "absent",
    }
}

fn decode(s: &str) -> Option<Gvisor> {
    match s {
        "usable" => Some(Gvisor::Usable),
        "no-host-uds" => Some(Gvisor::NoHostUds),
        "absent" => Some(Gvisor::Absent),
        _ => None,
    }
}

/// [`probe_gvisor`] with a one-line cache file: the engine's `/info` costs ~10 ms, more
/// than the rest of the preflight together, and its runtime list only changes when the
/// daemon restarts or its config changes, which the cache key follows. A cache that cannot
/// be read or written is ignored.
pub(crate) fn probe_gvisor_cached(
    docker_host: Option<&str>,
    timeout: Duration,
    cache_file: &std::path::Path,
) -> Option<Gvisor> {
    let socket = socket_path(docker_host)?;
    let key = cache_key(&socket);
    if let (Some(key), Ok(text)) = (&key, std::fs::read_to_string(cache_file)) {
        if let Some((k, v)) = text.trim_end().rsplit_once('\t') {
            if k == key {
                if let Some(g) = decode(v) {
                    return Some(g);
                }
            }
        }
    }
    let answer = probe_gvisor(docker_host, timeout)?;
    if let Some(key) = key {
        if let Some(dir) = cache_file.parent() {
            let _ = std::fs::create_dir_all(dir);
            let tmp = cache_file.with_extension("tmp");
            if std::fs::write(&tmp, format!("{key}\t{}\n", encode(answer))).is_ok() {
                let _ = std::fs::rename(&tmp, cache_file);
            }
        }
    }
    Some(answer)
}

/// Parse a raw HTTP/1.0 `/info` answer.
fn parse_info(answer: &[u8]) -> Option<Gvisor> {
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let (head, body) = (&answer[..split], &answer[split + 4..]);
    let status = head.split(|b| *b == b'\n').next()?;
    if !status.windows(5).any(|w| w == b" 200 ") {
        return None;
    }
    let info: serde_json::Value = serde_json::from_slice(body).ok()?;
    let runtimes = info.get("Runtimes")?.as_object()?;
    let Some(runsc) = runtimes.get("runsc") else {
        return Some(Gvisor::Absent);
    };
    let host_uds = runsc
        .get("runtimeArgs")
        .and_then(|a| a.as_array())
        .is_some_and(|args| {
            args.iter().filter_map(|a| a.as_str()).any(|a| {
                matches!(
                    a,
                    "--host-uds=open" | "--host-uds=all" | "-host-uds=open" | "-host-uds=all"
                )
            })
        });
    Some(if host_uds {
        Gvisor::Usable
    } else {
        Gvisor::NoHostUds
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_socket_and_unix_docker_host() {
        assert_eq!(
            socket_path(None),
            Some(PathBuf::from("/var/run/docker.sock"))
        );
        assert_eq!(
            socket_path(Some("unix:///run/user/1000/docker.sock")),
            Some(PathBuf::from("/run/user/1000/docker.sock"))
        );
        assert_eq!(socket_path(Some("tcp://10.0.0.1:2375")), None);
    }

    #[test]
    fn parses_runtimes_from_info() {
        let usable = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"Runtimes\":{\"runc\":{},\"runsc\":{\"path\":\"/usr/bin/runsc\",\"runtimeArgs\":[\"--host-uds=open\"]}}}";
        let no_uds = b"HTTP/1.0 200 OK\r\n\r\n{\"Runtimes\":{\"runc\":{},\"runsc\":{\"path\":\"/usr/bin/runsc\"}}}";
        let without = b"HTTP/1.0 200 OK\r\n\r\n{\"Runtimes\":{\"runc\":{}}}";
        assert_eq!(parse_info(usable), Some(Gvisor::Usable));
        assert_eq!(parse_info(no_uds), Some(Gvisor::NoHostUds));
        assert_eq!(parse_info(without), Some(Gvisor::Absent));
        assert_eq!(parse_info(b"HTTP/1.0 500 Oops\r\n\r\n{}"), None);
        assert_eq!(parse_info(b"garbage"), None);
    }

    #[test]
    fn the_cache_answers_until_the_socket_changes() {
        use std::io::{Read as _, Write as _};
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("engine.sock");
        let cache = dir.path().join("cache/engine");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let served = std::thread::spawn(move || {
            // Exactly one connection: a second probe must come from the cache.
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).unwrap();
            conn.write_all(b"HTTP/1.0 200 OK\r\n\r\n{\"Runtimes\":{\"runc\":{}}}")
                .unwrap();
        });
        let host = format!("unix://{}", sock.display());
        let t = Duration::from_millis(500);
        assert_eq!(
            probe_gvisor_cached(Some(&host), t, &cache),
            Some(Gvisor::Absent)
        );
        served.join().unwrap();
        assert_eq!(
            probe_gvisor_cached(Some(&host), t, &cache),
            Some(Gvisor::Absent)
        );
        // A restarted engine (new socket) is asked again: here nobody answers.
        std::fs::remove_file(&sock).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let text = std::fs::read_to_string(&cache).unwrap();
        std::fs::write(&cache, text.replace("absent", "usable")).unwrap();
        // Same key format, but the socket mtime differs, so the cached line is not used.
        assert_ne!(
            probe_gvisor_cached(Some(&host), Duration::from_millis(50), &cache),
            Some(Gvisor::Usable)
        );
    }

    #[test]
    fn missing_socket_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let host = format!("unix://{}/nope.sock", dir.path().display());
        assert_eq!(probe_gvisor(Some(&host), Duration::from_millis(50)), None);
    }
}
