//! `bot-bottle-init` with real child processes: fail closed, signal forwarding, SIGKILL
//! escalation, zombie reaping, configuration errors.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INIT: &str = env!("CARGO_BIN_EXE_bot-bottle-init");

struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    /// A config dir with one `<name>.args.json` per daemon; each daemon is `sh -c <script>` where
    /// `$D` is the scratch dir.
    fn new(daemons: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, script) in daemons {
            let argv = serde_json::json!(["sh", "-c", script]);
            fs::write(
                dir.path().join(format!("{name}.args.json")),
                argv.to_string(),
            )
            .unwrap();
        }
        Bundle { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start(&self, list: &str, timeout: &str) -> Child {
        Command::new(INIT)
            .env("BOT_BOTTLE_SIDECAR_DAEMONS", list)
            .env("BOT_BOTTLE_SIDECAR_CONFIG_DIR", self.dir.path())
            .env("BOT_BOTTLE_SIDECAR_STOP_TIMEOUT", timeout)
            .env("D", self.dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// Waits for the child (hang guard only, not a timing assertion).
fn wait(mut child: Child) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let code = out.status.code().unwrap_or(-1);
            return (code, String::from_utf8_lossy(&out.stderr).into_owned());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "init did not exit; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_file(p: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_pid(p: &Path) -> libc::pid_t {
    wait_for_file(p);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(pid) = fs::read_to_string(p).unwrap().trim().parse() {
            return pid;
        }
        assert!(Instant::now() < deadline, "no pid in {}", p.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn alive(pid: libc::pid_t) -> bool {
    // A zombie still answers kill(0); look at /proc state as well.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next());
    let exists = unsafe { libc::kill(pid, 0) == 0 };
    exists && state.is_some_and(|s| s != "Z")
}

/// `(pid, state)` of every process whose parent is `ppid`.
fn children_of(ppid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let rest: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if rest.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(ppid) {
            out.push((pid, rest[0].to_string()));
        }
    }
    out
}

fn send(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

const LOOP_FOREVER: &str = "while :; do sleep 0.05; done";

#[test]
fn a_dead_daemon_stops_the_others_and_fails_closed() {
    let b = Bundle::new(&[
        ("gate", &format!("echo $$ > $D/gate.pid; {LOOP_FOREVER}")),
        (
            "dies",
            "while [ ! -s $D/gate.pid ]; do sleep 0.02; done; exit 3",
        ),
    ]);
    let child = b.start("gate,dies", "5s");
    let gate = read_pid(&b.path("gate.pid"));
    let (code, stderr) = wait(child);
    assert_eq!(code, 3, "{stderr}");
    assert!(!alive(gate), "gate daemon survived the bundle");
    assert!(
        stderr.contains("dies") && stderr.contains("fail closed"),
        "{stderr}"
    );
}

#[test]
fn a_daemon_exiting_cleanly_still_fails_closed() {
    let b = Bundle::new(&[
        ("gate", &format!("echo $$ > $D/gate.pid; {LOOP_FOREVER}")),
        (
            "quits",
            "while [ ! -s $D/gate.pid ]; do sleep 0.02; done; exit 0",
        ),
    ]);
    let (code, stderr) = wait(b.start("gate,quits", "5s"));
    assert_eq!(code, 1, "{stderr}");
}

fn forwards(sig: libc::c_int) {
    let script = |n: &str| {
        format!(
            "trap 'echo got > $D/{n}.sig; exit 0' TERM INT; echo $$ > $D/{n}.pid; {LOOP_FOREVER}"
        )
    };
    let b = Bundle::new(&[("a", &script("a")), ("b", &script("b"))]);
    let child = b.start("a,b", "10s");
    let (pa, pb) = (read_pid(&b.path("a.pid")), read_pid(&b.path("b.pid")));
    send(&child, sig);
    let (code, stderr) = wait(child);
    assert_eq!(code, 128 + sig, "{stderr}");
    assert!(
        b.path("a.sig").exists() && b.path("b.sig").exists(),
        "{stderr}"
    );
    assert!(!alive(pa) && !alive(pb));
}

#[test]
fn sigterm_is_forwarded_to_every_daemon() {
    forwards(libc::SIGTERM);
}

#[test]
fn sigint_is_forwarded_to_every_daemon() {
    forwards(libc::SIGINT);
}

#[test]
fn a_daemon_ignoring_sigterm_is_killed_after_the_timeout() {
    let b = Bundle::new(&[(
        "stubborn",
        &format!("trap '' TERM; echo $$ > $D/s.pid; {LOOP_FOREVER}"),
    )]);
    let child = b.start("stubborn", "300ms");
    let pid = read_pid(&b.path("s.pid"));
    send(&child, libc::SIGTERM);
    let (code, stderr) = wait(child);
    assert_eq!(code, 143, "{stderr}");
    assert!(stderr.contains("SIGKILL"), "{stderr}");
    assert!(!alive(pid), "stubborn daemon survived SIGKILL");
}

#[test]
fn orphaned_grandchildren_are_reaped() {
    // Each `( sleep & )` leaves an orphan that is re-parented to the init (subreaper).
    let b = Bundle::new(&[(
        "spawner",
        "for i in 1 2 3; do (sleep 0.5 &); done; touch $D/spawned; exec sleep 1000",
    )]);
    let child = b.start("spawner", "5s");
    wait_for_file(&b.path("spawned"));
    let init_pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    // The orphans show up as the init's children...
    while children_of(init_pid).len() < 4 {
        assert!(
            Instant::now() < deadline,
            "orphans never re-parented: {:?}",
            children_of(init_pid)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // ...and, once they exit, are reaped instead of lingering as zombies.
    loop {
        let kids = children_of(init_pid);
        if kids.len() == 1 && kids[0].1 != "Z" {
            break;
        }
        assert!(Instant::now() < deadline, "zombies not reaped: {kids:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    send(&child, libc::SIGTERM);
    assert_eq!(wait(child).0, 143);
}

#[test]
fn an_unstartable_daemon_stops_those_already_started() {
    let b = Bundle::new(&[("gate", &format!("echo $$ > $D/gate.pid; {LOOP_FOREVER}"))]);
    fs::write(
        b.path("missing.args.json"),
        r#"["/nonexistent/bot-bottle-daemon"]"#,
    )
    .unwrap();
    let (code, stderr) = wait(b.start("gate,missing", "5s"));
    assert_eq!(code, 127, "{stderr}");
    assert!(stderr.contains("cannot start"), "{stderr}");
    if b.path("gate.pid").exists() {
        if let Ok(pid) = fs::read_to_string(b.path("gate.pid"))
            .unwrap()
            .trim()
            .parse()
        {
            assert!(!alive(pid));
        }
    }
}

#[test]
fn configuration_errors_start_nothing() {
    let b = Bundle::new(&[("first", "touch $D/first-ran; sleep 1000")]);
    // second daemon has no args file: the whole config is refused before anything runs
    let (code, stderr) = wait(b.start("first,second", "5s"));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("second.args.json"), "{stderr}");
    assert!(!b.path("first-ran").exists());

    let (code, stderr) = wait(b.start("", "5s"));
    assert_eq!(code, 2);
    assert!(stderr.contains("BOT_BOTTLE_SIDECAR_DAEMONS"), "{stderr}");

    fs::write(b.path("bad.args.json"), "not json").unwrap();
    let (code, stderr) = wait(b.start("bad", "5s"));
    assert_eq!(code, 2);
    assert!(stderr.contains("JSON array"), "{stderr}");

    let (code, stderr) = wait(b.start("first", "soon"));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("BOT_BOTTLE_SIDECAR_STOP_TIMEOUT"),
        "{stderr}"
    );
}

#[test]
fn daemons_inherit_the_environment_and_start_in_order() {
    let b = Bundle::new(&[
        ("one", "echo one >> $D/order; sleep 1000"),
        (
            "two",
            "while [ ! -s $D/order ]; do sleep 0.02; done; test \"$GATE_TOKEN\" = tok && exit 42; exit 1",
        ),
    ]);
    let mut cmd = Command::new(INIT);
    cmd.env("BOT_BOTTLE_SIDECAR_DAEMONS", "one,two")
        .env("BOT_BOTTLE_SIDECAR_CONFIG_DIR", b.dir.path())
        .env("D", b.dir.path())
        .env("GATE_TOKEN", "tok")
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    let (code, stderr) = wait(cmd.spawn().unwrap());
    assert_eq!(code, 42, "{stderr}");
}

#[test]
fn daemons_start_with_no_blocked_signals() {
    // The init blocks the signals it waits for; a daemon must not inherit that mask (a shell
    // would hide the problem by clearing it, so read the mask of a plain program).
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("mask.args.json"),
        r#"["grep","SigBlk","/proc/self/status"]"#,
    )
    .unwrap();
    let out = Command::new(INIT)
        .env("BOT_BOTTLE_SIDECAR_DAEMONS", "mask")
        .env("BOT_BOTTLE_SIDECAR_CONFIG_DIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mask = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .map(str::trim);
    assert_eq!(mask, Some("0000000000000000"), "{stdout}");
}

#[test]
fn a_relay_daemon_stops_on_forwarded_sigterm() {
    // A real Rust daemon (the relay) must see the SIGTERM the init forwards.
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("r.sock");
    let argv = serde_json::json!([
        env!("CARGO_BIN_EXE_bot-bottle-relay"),
        "--unix-to-tcp",
        format!("{}=127.0.0.1:9", sock.display())
    ]);
    fs::write(dir.path().join("relay.args.json"), argv.to_string()).unwrap();
    let child = Command::new(INIT)
        .env("BOT_BOTTLE_SIDECAR_DAEMONS", "relay")
        .env("BOT_BOTTLE_SIDECAR_CONFIG_DIR", dir.path())
        .env("BOT_BOTTLE_SIDECAR_STOP_TIMEOUT", "20s")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_file(&sock);
    send(&child, libc::SIGTERM);
    let (code, stderr) = wait(child);
    assert_eq!(code, 143, "{stderr}");
    // stopped by the forwarded signal, not by the SIGKILL escalation
    assert!(!stderr.contains("SIGKILL"), "{stderr}");
    assert!(!sock.exists(), "relay did not shut down cleanly: {stderr}");
}
