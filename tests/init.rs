//! `bot-bottle-init` with real child processes: fail closed, signal forwarding, SIGKILL
//! escalation, zombie reaping, configuration errors, and the signal state a daemon inherits.
//!
//! Every daemon loop ends once the test's scratch dir is gone, so a failing test leaves no
//! process behind.

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
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

    fn command(&self, list: &str, timeout: &str) -> Command {
        let mut cmd = Command::new(INIT);
        cmd.env("BOT_BOTTLE_SIDECAR_DAEMONS", list)
            .env("BOT_BOTTLE_SIDECAR_CONFIG_DIR", self.dir.path())
            .env("BOT_BOTTLE_SIDECAR_STOP_TIMEOUT", timeout)
            .env("D", self.dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn start(&self, list: &str, timeout: &str) -> Child {
        self.command(list, timeout).spawn().unwrap()
    }

    /// Starts the init with `ignored` set to `SIG_IGN`, the way a program started in the
    /// background by a non-interactive shell gets SIGINT and SIGQUIT.
    fn start_ignoring(&self, list: &str, timeout: &str, ignored: &[libc::c_int]) -> Child {
        let ignored = ignored.to_vec();
        let mut cmd = self.command(list, timeout);
        // SAFETY: only `signal` (async-signal-safe) runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for &s in &ignored {
                    libc::signal(s, libc::SIG_IGN);
                }
                Ok(())
            });
        }
        cmd.spawn().unwrap()
    }
}

/// Collects a pipe on a thread; the receiver yields the bytes once every writer is gone.
fn collect(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = pipe.read_to_end(&mut all);
            let _ = tx.send(all);
        });
    }
    rx
}

/// Waits for the init (hang guard only, not a timing assertion; kills it on a hang) and
/// returns its exit code, stdout and stderr. The pipes are read on threads and given up on
/// after a while: daemons that outlived a broken init still hold them, and a test must then
/// fail, not hang.
fn wait_output(mut child: Child) -> (i32, String, String) {
    let (out, err) = (collect(child.stdout.take()), collect(child.stderr.take()));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = |rx: mpsc::Receiver<Vec<u8>>| {
        let bytes = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let (stdout, stderr) = (text(out), text(err));
    let Some(status) = status else {
        panic!("init did not exit; stderr:\n{stderr}");
    };
    (status.code().unwrap_or(-1), stdout, stderr)
}

/// [`wait_output`] without the stdout.
fn wait(child: Child) -> (i32, String) {
    let (code, _, stderr) = wait_output(child);
    (code, stderr)
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

/// A daemon's main loop: runs until the scratch dir is removed (the test's end).
const LOOP_FOREVER: &str = r#"while [ -d "$D" ]; do sleep 0.05; done"#;

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

/// Two daemons that stop on any forwarded signal; the init is started with `ignored` set to
/// `SIG_IGN`. Each daemon must act on the signal itself, not on the SIGKILL escalation.
fn forwards(sig: libc::c_int, ignored: &[libc::c_int]) {
    let script = |n: &str| {
        format!(
            "trap 'echo got > $D/{n}.sig; exit 0' TERM INT HUP QUIT; echo $$ > $D/{n}.pid; \
             {LOOP_FOREVER}"
        )
    };
    let b = Bundle::new(&[("a", &script("a")), ("b", &script("b"))]);
    let child = b.start_ignoring("a,b", "10s", ignored);
    let (pa, pb) = (read_pid(&b.path("a.pid")), read_pid(&b.path("b.pid")));
    send(&child, sig);
    let (code, stderr) = wait(child);
    assert_eq!(code, 128 + sig, "{stderr}");
    assert!(
        b.path("a.sig").exists() && b.path("b.sig").exists(),
        "{stderr}"
    );
    assert!(!stderr.contains("SIGKILL"), "{stderr}");
    assert!(!alive(pa) && !alive(pb));
}

#[test]
fn sigterm_is_forwarded_to_every_daemon() {
    forwards(libc::SIGTERM, &[]);
}

#[test]
fn sigint_is_forwarded_to_every_daemon() {
    forwards(libc::SIGINT, &[]);
}

const STOP_SIGNALS: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

#[test]
fn daemons_act_on_forwarded_signals_the_init_inherited_as_ignored() {
    // A program started in the background by a non-interactive shell (`cargo test &` in a
    // script, many CI runners) inherits SIGINT and SIGQUIT ignored, and `exec` keeps that. A
    // daemon that inherited it from the init would never act on the SIGINT the init forwards,
    // and the bundle would sit out the stop timeout.
    for sig in STOP_SIGNALS {
        forwards(sig, &STOP_SIGNALS);
    }
}

#[test]
fn a_dead_daemon_is_noticed_when_the_init_inherited_sigchld_ignored() {
    // With SIGCHLD ignored the kernel reaps exited children itself and waitpid never reports
    // them: unless the init restores the default, a dead gate goes unnoticed (fail open).
    let b = Bundle::new(&[
        ("gate", &format!("echo $$ > $D/gate.pid; {LOOP_FOREVER}")),
        (
            "dies",
            "while [ ! -s $D/gate.pid ]; do sleep 0.02; done; exit 3",
        ),
    ]);
    let child = b.start_ignoring("gate,dies", "5s", &[libc::SIGCHLD]);
    let gate = read_pid(&b.path("gate.pid"));
    let (code, stderr) = wait(child);
    assert_eq!(code, 3, "{stderr}");
    assert!(!alive(gate), "gate daemon survived the bundle");
}

#[test]
fn a_stop_signal_pending_at_start_starts_no_daemon() {
    // The earliest a signal can reach the init: already pending when it execs. The init must
    // neither lose it nor start the gates it was asked to stop.
    let b = Bundle::new(&[("gate", &format!("touch $D/started; {LOOP_FOREVER}"))]);
    let mut cmd = b.command("gate", "10s");
    // SAFETY: sigprocmask/getpid/kill are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), libc::SIGTERM);
            Ok(())
        });
    }
    let (code, stderr) = wait(cmd.spawn().unwrap());
    assert_eq!(code, 143, "{stderr}");
    // The log, not the daemon, tells: a daemon killed by the forwarded signal before its
    // first command would leave no trace of having run.
    assert!(!stderr.contains("started"), "{stderr}");
    assert!(!b.path("started").exists(), "{stderr}");
}

#[test]
fn a_closed_log_pipe_does_not_stop_the_forwarding() {
    // The init logs to stderr; when nobody reads it any more, the stop signal must still reach
    // the daemons (a failed log write is not a reason to exit and orphan them). The daemon's
    // own stderr goes elsewhere: this is about the init's pipe, not the shell's.
    let script = format!(
        "exec 2>/dev/null; trap 'echo got > $D/gate.sig; exit 0' TERM; echo $$ > $D/gate.pid; \
         {LOOP_FOREVER}"
    );
    let b = Bundle::new(&[("gate", &script)]);
    let mut child = b.start("gate", "10s");
    let pid = read_pid(&b.path("gate.pid"));
    drop(child.stderr.take());
    send(&child, libc::SIGTERM);
    let (code, _) = wait(child);
    assert_eq!(code, 143);
    assert!(b.path("gate.sig").exists(), "the daemon never got SIGTERM");
    assert!(!alive(pid));
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
    // Each `( … & )` leaves an orphan that is re-parented to the init (subreaper). The orphans
    // live until the test releases them: one that exited before the test looked would make the
    // test fail under load.
    let b = Bundle::new(&[(
        "spawner",
        &format!(
            "for i in 1 2 3; do (while [ -d $D ] && [ ! -e $D/release ]; do sleep 0.02; done &); done; \
             touch $D/spawned; {LOOP_FOREVER}"
        ),
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
    fs::write(b.path("release"), "").unwrap();
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
        ("one", &format!("echo one >> $D/order; {LOOP_FOREVER}")),
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
fn daemons_start_with_a_clean_signal_state() {
    // The init blocks the signals it waits for, and may itself have inherited ignored ones;
    // `exec` keeps both. A daemon must start with nothing blocked and nothing ignored (a shell
    // would hide the problem by resetting its own state, so read a plain program's).
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("mask.args.json"),
        r#"["grep","-E","^Sig(Blk|Ign):","/proc/self/status"]"#,
    )
    .unwrap();
    let mut cmd = Command::new(INIT);
    cmd.env("BOT_BOTTLE_SIDECAR_DAEMONS", "mask")
        .env("BOT_BOTTLE_SIDECAR_CONFIG_DIR", dir.path());
    // SAFETY: only `signal` (async-signal-safe) runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            for s in [
                libc::SIGINT,
                libc::SIGQUIT,
                libc::SIGHUP,
                libc::SIGTERM,
                libc::SIGCHLD,
                libc::SIGUSR1,
            ] {
                libc::signal(s, libc::SIG_IGN);
            }
            Ok(())
        });
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (_, stdout, stderr) = wait_output(cmd.spawn().unwrap());
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
    };
    assert_eq!(field("SigBlk:"), Some(0), "{stdout}{stderr}");
    // Standard signals (1..=31): the ones the init resets and forwards.
    assert_eq!(
        field("SigIgn:").map(|m| m & 0x7fff_ffff),
        Some(0),
        "{stdout}{stderr}"
    );
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
