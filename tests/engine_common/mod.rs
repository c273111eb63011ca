//! Fixtures shared by the engine tests that run whole bottles on a real Docker engine: the
//! turn a test takes on the engine, the stub agent image, a temporary home with its bottle
//! and agent files (`world`), a bottle started in the background and stopped (`world`), the
//! TLS upstream on a bottle's egress network (`upstream`), and supervise's MCP tools called
//! from inside the agent with nothing but curl (`mcp`).
#![allow(dead_code)]

pub(crate) mod mcp;
pub(crate) mod upstream;
pub(crate) mod world;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The agent image of the engine tests: the real provider image with a stub `claude`.
pub(crate) const STUB_IMAGE: &str = "bot-bottle-test-agent:latest";

/// The stub `claude`: marks the session started, waits for a stop file and exits with the
/// code written in it, so a session is driven from outside with `exec`.
pub(crate) const STUB_CLAUDE: &str = "#!/bin/sh\ntouch /tmp/started\nwhile [ ! -f /tmp/stop ]; do sleep 0.2; done\nexit \"$(cat /tmp/stop 2>/dev/null || echo 0)\"\n";

/// Tests of one binary start bottles and read (or clean) the whole engine: one at a time.
static ENGINE: Mutex<()> = Mutex::new(());

/// This test's turn on the engine (a panicking test does not end the others' turns).
pub(crate) fn engine_turn() -> MutexGuard<'static, ()> {
    ENGINE.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bot-bottle"))
}

pub(crate) fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs")
}

/// `docker <args>`'s stdout, or what it said on failure.
pub(crate) fn docker_out(args: &[&str]) -> Result<String, String> {
    let out = docker(args);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(format!(
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `docker <args>`'s stdout; a failure fails the test.
pub(crate) fn docker_ok(args: &[&str]) -> String {
    docker_out(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Builds the real provider image (the CLI builds it from the embedded Dockerfile), then
/// `tag` on top of it with `stub` as `claude`.
pub(crate) fn build_stub_image_as(tag: &str, stub: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("claude"), stub).unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM bot-bottle-claude:latest\nUSER root\nRUN rm -f /usr/local/bin/claude\nCOPY claude /usr/local/bin/claude\nRUN chmod 755 /usr/local/bin/claude\nUSER node\n",
    )
    .unwrap();
    let out = Command::new(bin()).args(["build-images"]).output().unwrap();
    if !out.status.success() {
        return Err(format!(
            "build-images failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    docker_out(&["build", "-q", "-t", tag, &dir.path().display().to_string()]).map(|_| ())
}

/// [`STUB_IMAGE`] with [`STUB_CLAUDE`]; a failed build fails the test.
pub(crate) fn build_stub_image() {
    build_stub_image_as(STUB_IMAGE, STUB_CLAUDE).unwrap_or_else(|e| panic!("{e}"));
}

/// Kills these processes if the test fails midway, so a failed run does not leave a CLI
/// waiting; the containers it leaves are removed by the CI teardown (`bot-bottle-` prefix).
pub(crate) struct KillOnPanic(pub(crate) Vec<u32>);

impl Drop for KillOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for pid in &self.0 {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

/// Waits for `child` to exit; more than `secs` fails the test.
pub(crate) fn wait_exit(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "the process did not exit");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The first file under `dir` holding any of `needles`.
pub(crate) fn tree_contains<S: AsRef<str>>(dir: &Path, needles: &[S]) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            if let Some(hit) = tree_contains(&p, needles) {
                return Some(hit);
            }
        } else if let Ok(b) = std::fs::read(&p) {
            if needles.iter().any(|n| {
                let n = n.as_ref().as_bytes();
                b.windows(n.len()).any(|w| w == n)
            }) {
                return Some(p);
            }
        }
    }
    None
}
