//! The fault suite (THREATS F1–F6) against a real Docker engine, run when
//! `BOT_BOTTLE_ENGINE_TESTS=1` was set for the build (otherwise the test is listed as ignored
//! with a SKIPPED reason). Each case checks "no leaked secret, no unreported orphan, a clear
//! error" and prints one line `<id> <name>: pass|FAIL|skipped (<reason>)`; the run ends with
//! `N passed, N failed, N skipped` and fails if any case failed. The lines go straight to
//! stderr, so they show without `--nocapture`.
//!
//! Cases share bottles where each stays meaningful (F6 and F2 use the same two), and the
//! dockerd restart (F3) runs last; a guard starts dockerd again whatever happens.
//!
//! The agent image is the real `bot-bottle-claude` image with `claude` replaced by a stub
//! that waits for a stop file (without forking), so a session can be driven from outside
//! with `exec`.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::ops::Deref;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod engine_common;

use bot_bottle::doctor::probes::under_gvisor;
use bot_bottle::runner::RealRunner;
use engine_common::{build_stub_image_as, docker_out, tree_contains};

const TOKEN: &str = "fault-suite-token-5b1e77c0d2";
/// Its own tag: the stub differs from the one `engine_launch` builds.
const STUB_IMAGE: &str = "bot-bottle-test-agent-faults:latest";
/// The stub session: polls for the stop file without forking, so a fork bomb in the bottle
/// (which makes every fork fail) cannot end the session by itself.
const STUB: &str = "#!/bin/sh\ntouch /tmp/started\nexec node -e 'const fs=require(\"fs\"); setInterval(() => { let c; try { c = fs.readFileSync(\"/tmp/stop\", \"utf8\"); } catch (e) { return; } process.exit(parseInt(c, 10) || 0); }, 200)'\n";

/// One line of the report, unbuffered and uncaptured.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Verdict> {
    if cond {
        Ok(())
    } else {
        Err(Verdict::Fail(msg()))
    }
}

/// How a case ended besides passing.
#[derive(Debug)]
enum Verdict {
    Fail(String),
    Skip(String),
}

impl From<String> for Verdict {
    fn from(s: String) -> Self {
        Verdict::Fail(s)
    }
}

type CaseResult = Result<String, Verdict>;

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    skipped: usize,
    failures: Vec<String>,
}

impl Tally {
    /// Runs one case; a panic inside it is a failure, never the end of the suite.
    fn case(&mut self, id: &str, name: &str, f: impl FnOnce() -> CaseResult) {
        let started = Instant::now();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "panicked".into());
            Err(Verdict::Fail(msg))
        });
        let secs = started.elapsed().as_secs_f32();
        match r {
            Ok(note) => {
                self.passed += 1;
                let note = if note.is_empty() {
                    String::new()
                } else {
                    format!(" ({note})")
                };
                report(&format!("{id} {name}: pass{note} [{secs:.0} s]"));
            }
            Err(Verdict::Fail(why)) => {
                self.failed += 1;
                let why = why.replace('\n', " | ");
                report(&format!("{id} {name}: FAIL ({why}) [{secs:.0} s]"));
                self.failures.push(format!("{id} {name}: {why}"));
            }
            Err(Verdict::Skip(why)) => {
                self.skipped += 1;
                report(&format!("{id} {name}: skipped ({why})"));
            }
        }
    }
}

/// A home with two bottles (`dev`: a credentialed route; `small`: `dev` with a 512 MiB agent)
/// and a fresh agent per case, so cases never pick up each other's bottles.
struct World {
    base: engine_common::world::World,
    run: u32,
}

impl Deref for World {
    type Target = engine_common::world::World;

    fn deref(&self) -> &Self::Target {
        &self.base
    }
}

impl World {
    fn new() -> World {
        let mut base = engine_common::world::World::new("flt");
        base.image = STUB_IMAGE;
        base.token = TOKEN.into();
        base.token_var = Some("ENGINE_TOKEN");
        write_bottles(&base.home);
        World {
            base,
            run: std::process::id(),
        }
    }

    /// A new agent in `bottle`; its name is unique to this run and case.
    fn agent(&self, tag: &str, bottle: &str) -> String {
        let name = format!("flt{tag}{}", self.run);
        std::fs::write(
            self.home.join(format!("agents/{name}.md")),
            format!("---\nbottle: {bottle}\n---\nFault suite agent.\n"),
        )
        .unwrap();
        name
    }

    /// `start --yes <agent>` with stderr collected line by line; with `kill_on`, the CLI gets
    /// SIGKILL as soon as a progress line containing it appears.
    fn start(&self, agent: &str, kill_on: Option<&str>) -> Started {
        let mut child = self
            .cmd()
            .args(["start", "--yes", agent])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group, so a case can kill the session's `docker exec` with it.
            .process_group(0)
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let killed = Arc::new(Mutex::new(None::<String>));
        let stderr = child.stderr.take().unwrap();
        let pid = child.id() as libc::pid_t;
        let (l, k, marker) = (lines.clone(), killed.clone(), kill_on.map(str::to_string));
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(m) = &marker {
                    let mut k = k.lock().unwrap();
                    if k.is_none() && line.contains(m.as_str()) {
                        // SAFETY: signalling our own child by its id.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                        *k = Some(line.clone());
                    }
                }
                l.lock().unwrap().push(line);
            }
        });
        Started {
            child,
            lines,
            killed,
        }
    }

    fn active(&self) -> Vec<serde_json::Value> {
        let out = self
            .cmd()
            .args(["list", "active", "--json"])
            .output()
            .unwrap();
        if !out.status.success() {
            return Vec::new();
        }
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    fn active_ids(&self, agent: &str) -> Vec<String> {
        self.active()
            .into_iter()
            .filter(|b| b["agent"] == agent)
            .filter_map(|b| b["id"].as_str().map(str::to_string))
            .collect()
    }

    /// Waits until `n` bottles of `agent` are listed and each session's stub has started.
    fn wait_sessions(&self, agent: &str, n: usize, secs: u64) -> Result<Vec<String>, String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut ready = BTreeSet::new();
        loop {
            for id in self.active_ids(agent) {
                if !ready.contains(&id) && self.exec(&id, "test -f /tmp/started").status.success() {
                    ready.insert(id);
                }
            }
            if ready.len() >= n {
                return Ok(ready.into_iter().collect());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {n} sessions of {agent} started within {secs} s",
                    ready.len()
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `bot-bottle exec` with a deadline: under gVisor an exec into a container that died
    /// never returns, so after `EXEC_DEADLINE` its whole process group is killed and the
    /// output says so.
    fn exec(&self, id: &str, script: &str) -> std::process::Output {
        self.exec_within(id, script, EXEC_DEADLINE)
    }

    fn exec_within(&self, id: &str, script: &str, limit: Duration) -> std::process::Output {
        let mut child = self
            .cmd()
            .args(["exec", id, "--", "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let read = |mut r: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = r.read_to_end(&mut buf);
                buf
            })
        };
        let out = read(Box::new(child.stdout.take().unwrap()));
        let err = read(Box::new(child.stderr.take().unwrap()));
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                // SAFETY: signalling our own child's process group.
                unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
                break child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = err.join().unwrap_or_default();
        if Instant::now() > deadline {
            stderr
                .extend_from_slice(format!("[exec killed after {} s]", limit.as_secs()).as_bytes());
        }
        std::process::Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr,
        }
    }

    fn exec_ok(&self, id: &str, script: &str) -> Result<String, String> {
        let out = self.exec(id, script);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).to_string())
        } else {
            Err(format!(
                "`{script}` failed in {id}: {}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Egress answers a request for a host without a route with its 403: it is up and
    /// enforcing.
    fn egress_enforces(&self, id: &str) -> Result<(), String> {
        let code = self.exec_ok(
            id,
            "curl -sS -o /dev/null -w '%{http_code}' --max-time 20 http://denied.example/",
        )?;
        if code.trim() == "403" {
            Ok(())
        } else {
            Err(format!("egress of {id} answered {code:?}, not 403"))
        }
    }

    /// Everything of `agent` that still exists: containers, networks, volumes, state dirs
    /// (a preserved state dir is reported, not an orphan: `list preserved` shows it).
    fn leftovers(&self, agent: &str) -> Vec<String> {
        let needle = format!("{agent}-");
        let mut v = Vec::new();
        for args in [
            ["ps", "-a", "--format", "{{.Names}}"],
            ["network", "ls", "--format", "{{.Name}}"],
            ["volume", "ls", "--format", "{{.Name}}"],
        ] {
            match docker_out(&args) {
                Ok(out) => v.extend(
                    out.lines()
                        .filter(|n| n.contains(&needle))
                        .map(str::to_string),
                ),
                Err(e) => v.push(e),
            }
        }
        for (id, preserved) in self.state_dirs(agent) {
            if !preserved {
                v.push(format!("state dir {id}"));
            }
        }
        v
    }

    fn state_dirs(&self, agent: &str) -> Vec<(String, bool)> {
        let needle = format!("{agent}-");
        std::fs::read_dir(self.home.join("state"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| {
                        let id = e.file_name().into_string().ok()?;
                        id.starts_with(&needle)
                            .then(|| (id, e.path().join(".preserve").exists()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until what exists of `agent` stops changing (a killed CLI's children may still
    /// be finishing), at most `secs`.
    fn settle(&self, agent: &str, secs: u64) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut last = self.leftovers(agent);
        let mut stable_since = Instant::now();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            let now = self.leftovers(agent);
            if now != last {
                last = now;
                stable_since = Instant::now();
            } else if stable_since.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        last
    }

    fn cleanup(&self) -> Result<String, String> {
        let out = self.cmd().args(["cleanup", "--yes"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        if out.status.success() {
            Ok(err)
        } else {
            Err(format!(
                "cleanup failed: {}",
                one_error_line(&err).unwrap_or(err.trim())
            ))
        }
    }

    /// No credential in the home (state dirs, compose files, logs) or in `text`.
    fn no_leak(&self, text: &str) -> Result<(), String> {
        if let Some(p) = tree_contains(&self.home, &[TOKEN]) {
            return Err(format!("the token is in {}", p.display()));
        }
        if text.contains(TOKEN) {
            return Err("the token is in the CLI's output".into());
        }
        Ok(())
    }
}

fn write_bottles(home: &Path) {
    std::fs::write(
        home.join("bottles/dev.md"),
        "---\nenv:\n  GREETING: \"hello\"\negress:\n  routes:\n    - host: upstream.test\n      auth:\n        scheme: Bearer\n        token_ref: ENGINE_TOKEN\n---\n",
    )
    .unwrap();
    std::fs::write(
        home.join("bottles/small.md"),
        "---\nextends: dev\nlimits:\n  agent: {memory: \"512m\"}\n---\n",
    )
    .unwrap();
}

/// A running `start` and what it printed.
struct Started {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    killed: Arc<Mutex<Option<String>>>,
}

impl Started {
    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn wait(&mut self, secs: u64) -> Result<std::process::ExitStatus, String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // Let the reader take the last lines.
                std::thread::sleep(Duration::from_millis(200));
                return Ok(st);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "`start` still running after {secs} s; it printed: {}",
                    self.text()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        // SAFETY: signalling our own child's process group (what a killed step left behind).
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child that is killed and reaped however the case ends.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn one_error_line(text: &str) -> Option<&str> {
    text.lines().find(|l| l.starts_with("bot-bottle: error: "))
}

// ---------------------------------------------------------------- F1

/// SIGKILL of the CLI right after a launch step's progress line (or mid-session), then
/// `cleanup` finds and removes everything of that bottle.
fn f1(w: &World, tag: &str, step: Option<&str>) -> CaseResult {
    let agent = w.agent(tag, "dev");
    let mut s = w.start(&agent, step);
    let during = match step {
        Some(_) => {
            s.wait(240)?;
            match s.killed.lock().unwrap().clone() {
                Some(line) => line,
                None => {
                    return Err(Verdict::Fail(format!(
                        "the step never printed; `start` said: {}",
                        s.text()
                    )));
                }
            }
        }
        None => {
            w.wait_sessions(&agent, 1, 240)?;
            // The whole group, as a closed terminal does: under gVisor an orphaned session
            // `docker exec` never returns once `cleanup` removes its container.
            // SAFETY: signalling our own child's process group.
            unsafe { libc::kill(-(s.child.id() as libc::pid_t), libc::SIGKILL) };
            let _ = s.child.wait();
            "mid-session".to_string()
        }
    };
    let before = w.settle(&agent, 60);
    let cleanup = w.cleanup()?;
    let after = w.settle(&agent, 10);
    ensure(after.is_empty(), || {
        format!("left after cleanup: {after:?} (killed at {during:?})")
    })?;
    // Nothing comes back once cleanup is done (no late container from a killed child).
    std::thread::sleep(Duration::from_secs(2));
    let late = w.leftovers(&agent);
    ensure(late.is_empty(), || {
        format!("appeared after cleanup: {late:?}")
    })?;
    w.no_leak(&format!("{}\n{cleanup}", s.text()))?;
    Ok(format!("{} left by the kill, all removed", before.len()))
}

// ---------------------------------------------------------------- F4

/// Runs `f` with a full tmpfs mounted at `dir`; unmounts whatever happens.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, Verdict> {
        std::fs::create_dir_all(dir).unwrap();
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } != 0 {
            return Err(Verdict::Skip("needs root to mount a tmpfs".into()));
        }
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .map_err(|e| Verdict::Skip(format!("cannot run mount: {e}")))?;
        if !st.success() {
            return Err(Verdict::Skip(format!("mount -t tmpfs failed ({st})")));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn f4(w: &World) -> CaseResult {
    let mnt = w.tmp.path().join("full");
    let _fs = Tmpfs::mount(&mnt, "4m")?;
    let home = mnt.join("home");
    std::fs::create_dir_all(home.join("bottles")).unwrap();
    std::fs::create_dir_all(home.join("agents")).unwrap();
    write_bottles(&home);
    let agent = format!("fltfull{}", w.run);
    std::fs::write(
        home.join(format!("agents/{agent}.md")),
        "---\nbottle: dev\n---\nFull disk.\n",
    )
    .unwrap();
    // Fill what is left.
    {
        let mut f = std::fs::File::create(mnt.join("filler")).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
    }
    let out = w
        .cmd_in(&home)
        .args(["start", "--yes", &agent])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    ensure(out.status.code() == Some(1), || {
        format!("exit {:?}, expected 1: {err}", out.status.code())
    })?;
    let line = one_error_line(&err).ok_or_else(|| format!("no error line: {err}"))?;
    ensure(line.contains("free") || line.contains("space"), || {
        format!("the error does not name the cause: {line}")
    })?;
    ensure(!err.contains("panicked"), || err.clone())?;
    let needle = format!("{agent}-");
    let containers = docker_out(&["ps", "-a", "--format", "{{.Names}}"])?;
    ensure(!containers.contains(&needle), || {
        format!("a container started: {containers}")
    })?;
    let states: Vec<String> = std::fs::read_dir(home.join("state"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    ensure(states.is_empty(), || format!("state left: {states:?}"))?;
    ensure(!err.contains(TOKEN), || "the token is in the output".into())?;
    Ok(line
        .trim_start_matches("bot-bottle: error: ")
        .chars()
        .take(90)
        .collect())
}

// ---------------------------------------------------------------- F5

fn stop_all(w: &World, ids: &[String]) {
    for id in ids {
        let _ = w.exec(id, "echo 0 > /tmp/stop");
    }
}

fn f5_two(w: &World) -> CaseResult {
    let agent = w.agent("twin", "dev");
    let mut a = w.start(&agent, None);
    let mut b = w.start(&agent, None);
    let ids = w.wait_sessions(&agent, 2, 300);
    let ids = match ids {
        Ok(ids) => ids,
        Err(e) => {
            // One clear error is the other allowed outcome.
            let exited: Vec<String> = [&mut a, &mut b]
                .into_iter()
                .filter_map(|s| s.child.try_wait().ok().flatten().map(|_| s.text()))
                .collect();
            let clear = exited.iter().all(|t| one_error_line(t).is_some());
            if exited.len() == 1 && clear {
                let ids = w.active_ids(&agent);
                stop_all(w, &ids);
                return Ok(format!(
                    "one refused: {}",
                    one_error_line(&exited[0]).unwrap()
                ));
            }
            return Err(Verdict::Fail(format!("{e}; exited: {exited:?}")));
        }
    };
    ensure(ids.len() == 2 && ids[0] != ids[1], || {
        format!("ids {ids:?}")
    })?;
    stop_all(w, &ids);
    for s in [&mut a, &mut b] {
        let st = s.wait(120)?;
        ensure(st.success(), || {
            format!("`start` exited {st}: {}", s.text())
        })?;
    }
    let left = w.settle(&agent, 10);
    ensure(left.is_empty(), || format!("left: {left:?}"))?;
    w.no_leak(&format!("{}\n{}", a.text(), b.text()))?;
    Ok(format!("distinct bottles {} and {}", ids[0], ids[1]))
}

fn f5_ten(w: &World) -> CaseResult {
    let agent = w.agent("ten", "dev");
    let mut starts: Vec<Started> = (0..10).map(|_| w.start(&agent, None)).collect();
    let ids = w.wait_sessions(&agent, 10, 420)?;
    ensure(ids.len() == 10, || format!("{} bottles", ids.len()))?;
    let cleanup = w.cleanup()?;
    // Every CLI notices its bottle is gone and ends with a message, none hangs or panics.
    let mut texts = Vec::new();
    for s in &mut starts {
        s.wait(180)?;
        let t = s.text();
        ensure(!t.contains("panicked"), || t.clone())?;
        texts.push(t);
    }
    let left = w.settle(&agent, 10);
    ensure(left.is_empty(), || format!("left after cleanup: {left:?}"))?;
    let preserved = w.state_dirs(&agent);
    // A CLI that says its state was kept points at a state that exists.
    for t in &texts {
        for line in t
            .lines()
            .filter(|l| l.contains("state kept: `bot-bottle resume "))
        {
            let id = line.rsplit(' ').next().unwrap_or("").trim_matches('`');
            ensure(preserved.iter().any(|(d, p)| d == id && *p), || {
                format!("`start` claims a state that is gone: {line}")
            })?;
        }
    }
    let preserved = preserved.len();
    w.no_leak(&format!("{}\n{cleanup}", texts.join("\n")))?;
    Ok(format!(
        "10 up, all removed; {preserved} state dirs kept for resume as the CLIs reported"
    ))
}

// ---------------------------------------------------------------- F6 + F2

/// Limits as the engine applied them: `NanoCpus Memory MemorySwap PidsLimit`.
fn applied_limits(container: &str) -> Result<String, String> {
    docker_out(&[
        "inspect",
        "-f",
        "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.PidsLimit}}",
        container,
    ])
    .map(|s| s.trim().to_string())
}

fn host_cpus() -> u64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1)
}

fn f6_limits(p: &str, q: &str) -> CaseResult {
    let agent_cpus = host_cpus().saturating_sub(1).max(1) * 1_000_000_000;
    let want_small = format!("{agent_cpus} {m} {m} 2048", m = 512u64 << 20);
    let want_default = format!("{agent_cpus} {m} {m} 2048", m = 4u64 << 30);
    let want_bundle = format!("1000000000 {m} {m} 1024", m = 1u64 << 30);
    for (c, want) in [
        (format!("bot-bottle-{p}"), &want_small),
        (format!("bot-bottle-{q}"), &want_default),
        (format!("bot-bottle-sidecars-{p}"), &want_bundle),
        (format!("bot-bottle-sidecars-{q}"), &want_bundle),
    ] {
        let got = applied_limits(&c)?;
        ensure(&got == want, || format!("{c}: {got}, expected {want}"))?;
    }
    Ok("agent 512m (bottle) / 4g (default), pids 2048; bundles 1 CPU, 1g, 1024".into())
}

/// `docker ps` on the host, with a 2 s deadline (the acceptance line); the time it
/// took.
fn docker_ps_within(deadline: Duration) -> Result<Duration, String> {
    let t = Instant::now();
    let mut child = Command::new("docker")
        .args(["ps", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("docker ps: {e}"))?;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return if st.success() {
                Ok(t.elapsed())
            } else {
                Err(format!("docker ps failed ({st})"))
            };
        }
        if t.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("docker ps did not answer within {deadline:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Cgroup v1 pids accounting of a container (`current`, `max` events), when readable.
fn pids_events(container: &str) -> Option<(u64, u64)> {
    let id = docker_out(&["inspect", "-f", "{{.Id}}", container]).ok()?;
    let dir = PathBuf::from("/sys/fs/cgroup/pids/docker").join(id.trim());
    let current = std::fs::read_to_string(dir.join("pids.current"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let events = std::fs::read_to_string(dir.join("pids.events")).ok()?;
    let max = events
        .lines()
        .find_map(|l| l.strip_prefix("max "))
        .and_then(|n| n.trim().parse().ok())?;
    Some((current, max))
}

/// The flood: every request through the agent's proxy at once, one status per line (`000`
/// when none came within 30 s).
const FLOOD_JS: &str = "const http=require('http');\
const px=new URL(process.env.http_proxy||process.env.HTTP_PROXY||'http://127.0.0.1:9099');\
let left=300;const out=[];\
for(let i=1;i<=300;i++){let seen=false;const done=c=>{if(seen)return;seen=true;out.push(c);\
if(--left===0)console.log(out.join('\\n'))};\
const r=http.request({host:px.hostname,port:+px.port||80,path:'http://denied.example/f'+i,\
headers:{host:'denied.example'},agent:false,timeout:30000},\
s=>{s.resume();s.on('end',()=>done(String(s.statusCode)))});\
r.on('timeout',()=>r.destroy());r.on('error',()=>done('000'));r.end()}";

/// Longest any one `exec` into a bottle may take (the flood's requests time out after 30 s).
const EXEC_DEADLINE: Duration = Duration::from_secs(120);

const FORK_BOMB: &str = "( sleep 15; : > /tmp/bomb-stop ) & sleep 0.5; \
     b() { while [ ! -e /tmp/bomb-stop ]; do b & done; }; b; true";

/// A bottle of its own (the 512 MiB one) for an attack on its resources, `q` the neighbour.
/// After `attack` (given the bottle's id and whether it runs under gVisor) the bottle must
/// work again, or under gVisor may have ended: there the sandbox's own threads and memory
/// count against the container's limits (about eight host pids per process in the bottle),
/// and at a limit gVisor's sandbox is stopped whole instead of one fork or one process
/// failing. Either way the neighbour still enforces, and the bottle's `start` ends and removes
/// it.
fn f6_in_own_bottle(
    w: &World,
    tag: &str,
    q: &str,
    attack: impl FnOnce(&str, bool) -> CaseResult,
) -> CaseResult {
    let agent = w.agent(tag, "small");
    let mut started = w.start(&agent, None);
    let p = w.wait_sessions(&agent, 1, 240)?.remove(0);
    let container = format!("bot-bottle-{p}");
    let gvisor = under_gvisor(&RealRunner, &container).map_err(|e| e.to_string())?;
    let seen = attack(&p, gvisor)?;
    let deadline = Instant::now() + Duration::from_secs(90);
    let outcome = loop {
        let running = docker_out(&["inspect", "-f", "{{.State.Running}}", &container])
            .map(|s| s.trim() == "true")
            .unwrap_or(false);
        if gvisor && !running {
            break "gVisor stopped the bottle at its limit";
        }
        if running && w.exec(&p, "true").status.success() {
            w.egress_enforces(&p)?;
            break "the bottle works again and enforces";
        }
        if Instant::now() > deadline {
            return Err(Verdict::Fail(format!(
                "the bottle neither recovered nor ended ({seen})"
            )));
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    docker_ps_within(Duration::from_secs(2))?;
    w.egress_enforces(q)?;
    stop_all(w, std::slice::from_ref(&p));
    // Its own `start` tears it down (`cleanup` would take the neighbour too).
    started.wait(120)?;
    let left = w.settle(&agent, 10);
    ensure(left.is_empty(), || {
        format!("left after its start ended: {left:?}")
    })?;
    Ok(format!("{seen}; {outcome}; the neighbour enforces"))
}

/// A fork bomb: the host's `docker ps` answers within 2 s throughout, the neighbour keeps
/// enforcing, the bottle's pids stay at its limit.
fn f6_fork_bomb(w: &World, p: &str, q: &str) -> CaseResult {
    let container = format!("bot-bottle-{p}");
    let _ = w.exec(p, "rm -f /tmp/bomb-stop");
    let bomb_started = Instant::now();
    // The exec returns once its own shell fails to fork; the bomb goes on until the stop
    // file, which a process started before it writes.
    let _bomb = Reap(
        w.cmd()
            .args(["exec", p, "--", "sh", "-c", FORK_BOMB])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(3));
    let mut worst = Duration::ZERO;
    let mut samples = 0;
    let mut other_ok = false;
    let mut peak = None;
    while bomb_started.elapsed() < Duration::from_secs(13) {
        let took = docker_ps_within(Duration::from_secs(2))?;
        worst = worst.max(took);
        samples += 1;
        if let Some(ev) = pids_events(&container) {
            peak = Some(ev);
        }
        if !other_ok {
            w.egress_enforces(q)?;
            other_ok = true;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    ensure(other_ok, || "the other bottle was never checked".into())?;
    if let Some((current, _)) = peak {
        ensure(current <= 2048, || format!("{current} pids in the bottle"))?;
    }
    let hit = match peak {
        Some((_, max)) if max > 0 => format!("; {max} forks refused at the pids limit"),
        Some(_) => "; the pids limit was not reached".into(),
        None => String::new(),
    };
    Ok(format!(
        "docker ps worst {:.2} s over {samples} samples{hit}",
        worst.as_secs_f32()
    ))
}

/// A memory hog: stopped at the bottle's 512 MiB (under runc the hog alone is killed).
fn f6_memory_hog(w: &World, p: &str, gvisor: bool) -> CaseResult {
    // 512 MiB fills in seconds; under gVisor the exec outlives its dead sandbox, so it gets
    // a short deadline.
    let out = w.exec_within(
        p,
        "node -e 'const a=[]; for(;;) a.push(Buffer.alloc(32<<20, 1))'; echo \"exit=$?\"",
        Duration::from_secs(40),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // Under gVisor the engine's OOM kill takes the whole sandbox, the exec with it.
    ensure(text.contains("exit=137") || gvisor, || {
        format!(
            "the hog was not stopped by the memory limit: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    docker_ps_within(Duration::from_secs(2))?;
    Ok(if text.contains("exit=137") {
        "the hog was killed at 512m".into()
    } else {
        "the hog ended with its sandbox at 512m".into()
    })
}

/// 300 concurrent requests from the agent at egress, from one node process (under gVisor each
/// process in the bottle costs about eight host pids of its limit, so 300 `curl`s would test
/// the limit instead of egress).
fn f6_flood(w: &World, q: &str) -> CaseResult {
    let n = 300;
    let out = w.exec_ok(
        q,
        &format!("node -e {}", bot_bottle::runner::shell_escape(FLOOD_JS)),
    )?;
    let codes: Vec<&str> = out.lines().collect();
    let denied = codes.iter().filter(|c| **c == "403").count();
    let other: BTreeSet<&str> = codes.iter().copied().filter(|c| *c != "403").collect();
    // Refused or not answered, never forwarded.
    ensure(other.iter().all(|c| *c == "000"), || {
        format!("unexpected answers during the flood: {other:?}")
    })?;
    ensure(denied > 0, || "no request was answered at all".into())?;
    w.egress_enforces(q)?;
    let running = docker_out(&[
        "inspect",
        "-f",
        "{{.State.Running}}",
        &format!("bot-bottle-sidecars-{q}"),
    ])?;
    ensure(running.trim() == "true", || {
        "the bundle died under the flood".into()
    })?;
    Ok(format!(
        "{denied} of {n} refused with 403, the rest unanswered; still enforcing"
    ))
}

/// The agent's request when its gate is gone: refused or closed, never answered, and no
/// direct path or DNS.
fn no_way_out(w: &World, id: &str) -> Result<String, String> {
    let out = w.exec(
        id,
        "curl -sS -o /dev/null -w '%{http_code}' --max-time 10 http://denied.example/; echo \" exit=$?\"",
    );
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let exit = text.rsplit("exit=").next().unwrap_or("").to_string();
    if exit == "0" {
        return Err(format!("a request got an answer without the gate: {text}"));
    }
    for (what, script) in [
        (
            "direct",
            "curl --noproxy '*' -sS --max-time 5 http://1.1.1.1/",
        ),
        ("dns", "getent hosts example.com"),
    ] {
        if w.exec(id, script).status.success() {
            return Err(format!("{what} path worked in {id}"));
        }
    }
    Ok(format!("curl exit {exit}"))
}

fn f2_kill_egress(w: &World, p: &str) -> CaseResult {
    let sidecar = format!("bot-bottle-sidecars-{p}");
    let top = docker_out(&["top", &sidecar, "-eo", "pid,args"])?;
    let pid = top
        .lines()
        .find(|l| l.contains("bot-bottle-egress"))
        .and_then(|l| l.split_whitespace().next())
        .ok_or_else(|| "egress does not run in the bundle".to_string())?
        .to_string();
    let st = Command::new("kill").args(["-9", &pid]).status().unwrap();
    ensure(st.success(), || format!("kill {pid} failed"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while docker_out(&["inspect", "-f", "{{.State.Running}}", &sidecar])?.trim() == "true" {
        ensure(Instant::now() < deadline, || {
            "the bundle kept running without egress".into()
        })?;
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(format!("bundle down with egress; {}", no_way_out(w, p)?))
}

fn f2_kill_bundle(w: &World, q: &str) -> CaseResult {
    docker_out(&["kill", &format!("bot-bottle-sidecars-{q}")])?;
    Ok(format!("bundle killed; {}", no_way_out(w, q)?))
}

// ---------------------------------------------------------------- F3

const DOCKER_PID: &str = "/var/run/docker.pid";

fn dockerd_pid() -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(DOCKER_PID)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline)
        .contains("dockerd")
        .then_some(pid)
}

fn engine_up() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The engine lock (`flock /tmp/bb-engine.lock cargo test …`) reaches this process as an
/// inherited descriptor. A dockerd started from here must not inherit it, or the engine
/// would hold the lock for as long as it runs and every later engine test would wait: mark
/// every inherited descriptor close-on-exec.
fn no_inherited_fds_for_children() {
    let Ok(rd) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: F_GETFD/F_SETFD on a descriptor number; a closed one just fails.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Which files (by path) a process holds open.
fn open_files(pid: i32) -> Vec<PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Starts dockerd the way the CI recipe does (`../shared/ci/setup-docker-engine.sh`): its own
/// session, the recipe's config file and log, stdin from /dev/null, and no descriptor of
/// ours (the engine lock above all).
fn start_dockerd() -> Result<(), String> {
    no_inherited_fds_for_children();
    let log = std::env::var("BB_DOCKERD_LOG").unwrap_or_else(|_| "/var/log/dockerd-ci.log".into());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| format!("{log}: {e}"))?;
    let st = Command::new("setsid")
        .args(["-f", "dockerd", "--config-file", "/etc/docker/daemon.json"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .map_err(|e| format!("setsid dockerd: {e}"))?;
    if !st.success() {
        return Err(format!("setsid dockerd exited {st}"));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !engine_up() {
        if Instant::now() > deadline {
            return Err("dockerd did not answer within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(pid) = dockerd_pid() {
        if let Some(f) = open_files(pid)
            .into_iter()
            .find(|f| f.to_string_lossy().contains("bb-engine.lock"))
        {
            return Err(format!("the new dockerd holds {}", f.display()));
        }
    }
    Ok(())
}

fn stop_dockerd(pid: i32) -> Result<(), String> {
    // SAFETY: signalling the engine's pid read from its pid file.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Path::new(&format!("/proc/{pid}")).exists() {
        if Instant::now() > deadline {
            return Err(format!("dockerd {pid} did not stop within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Whatever a case does, the engine is up again afterwards.
struct EngineBack;

impl Drop for EngineBack {
    fn drop(&mut self) {
        if !engine_up() && dockerd_pid().is_none() {
            if let Err(e) = start_dockerd() {
                report(&format!("F3: could not start dockerd again: {e}"));
            }
        }
    }
}

fn f3(w: &World) -> CaseResult {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return Err(Verdict::Skip("needs root to restart dockerd".into()));
    }
    let Some(pid) = dockerd_pid() else {
        return Err(Verdict::Skip(format!(
            "no dockerd pid in {DOCKER_PID}: the engine is not managed on this host"
        )));
    };
    let agent = w.agent("dockerd", "dev");
    let mut s = w.start(&agent, None);
    let id = w.wait_sessions(&agent, 1, 240)?.remove(0);
    let _back = EngineBack;
    let t = Instant::now();
    stop_dockerd(pid)?;
    start_dockerd()?;
    let down = t.elapsed();
    // The CLI ends by itself with a message, not a hang or a panic.
    let st = s.wait(180)?;
    let text = s.text();
    ensure(!text.contains("panicked"), || text.clone())?;
    ensure(text.lines().any(|l| l.starts_with("bot-bottle: ")), || {
        format!("no message from `start`: {text}")
    })?;
    // Nothing of the bottle runs again after the restart: no agent without its gates.
    let running = docker_out(&[
        "ps",
        "--filter",
        &format!("label=dev.bot-bottle.identity={id}"),
        "--format",
        "{{.Names}}",
    ])?;
    ensure(running.trim().is_empty(), || {
        format!("running after the restart: {running}")
    })?;
    w.cleanup()?;
    let left = w.settle(&agent, 10);
    ensure(left.is_empty(), || format!("left after cleanup: {left:?}"))?;
    w.no_leak(&text)?;
    let last = text
        .lines()
        .rfind(|l| l.starts_with("bot-bottle: "))
        .unwrap_or("")
        .chars()
        .take(100)
        .collect::<String>();
    Ok(format!(
        "engine back in {:.1} s; `start` exited {} saying {last:?}",
        down.as_secs_f32(),
        st.code().unwrap_or(-1)
    ))
}

// ---------------------------------------------------------------- the suite

#[test]
#[cfg_attr(
    not(engine_tests),
    ignore = "SKIPPED: engine test; build with BOT_BOTTLE_ENGINE_TESTS=1 and a Docker engine"
)]
fn fault_suite() {
    let started = Instant::now();
    let mut t = Tally::default();
    let built = build_stub_image_as(STUB_IMAGE, STUB);
    let w = World::new();
    let ready = || -> Result<(), Verdict> {
        match &built {
            Ok(()) => Ok(()),
            Err(e) => Err(Verdict::Fail(format!("images: {e}"))),
        }
    };

    t.case("F4", "state dir on a full filesystem", || {
        ready()?;
        f4(&w)
    });
    for (tag, name, step) in [
        (
            "ka",
            "SIGKILL after `checking images`",
            Some("checking images"),
        ),
        (
            "kb",
            "SIGKILL after `starting bottle`",
            Some("starting bottle"),
        ),
        ("kc", "SIGKILL after `provisioning`", Some("provisioning")),
        ("kd", "SIGKILL after `session:`", Some("session: ")),
        ("ke", "SIGKILL mid-session", None),
    ] {
        t.case("F1", name, || {
            ready()?;
            f1(&w, tag, step)
        });
    }
    t.case("F5", "two starts of the same agent at once", || {
        ready()?;
        f5_two(&w)
    });
    t.case("F5", "ten bottles at once, then cleanup", || {
        ready()?;
        f5_ten(&w)
    });

    // F6 and F2 share two bottles: P (512 MiB agent) takes the faults, Q is the neighbour.
    let shared = (|| -> Result<(Started, Started, String, String, String, String), String> {
        built.clone()?;
        let pa = w.agent("pee", "small");
        let qa = w.agent("queue", "dev");
        let ps = w.start(&pa, None);
        let qs = w.start(&qa, None);
        let p = w.wait_sessions(&pa, 1, 240)?.remove(0);
        let q = w.wait_sessions(&qa, 1, 240)?.remove(0);
        Ok((ps, qs, p, q, pa, qa))
    })();
    let bottles = shared
        .as_ref()
        .map(|(_, _, p, q, _, _)| (p.clone(), q.clone()));
    let need = || -> Result<(String, String), Verdict> {
        bottles
            .clone()
            .map_err(|e| Verdict::Fail(format!("the shared bottles did not start: {e}")))
    };
    t.case("F6", "limits applied by default and per bottle", || {
        let (p, q) = need()?;
        f6_limits(&p, &q)
    });
    t.case("F6", "request flood: egress keeps enforcing", || {
        let (_, q) = need()?;
        f6_flood(&w, &q)
    });
    t.case("F6", "fork bomb: host and neighbour keep working", || {
        let (_, q) = need()?;
        f6_in_own_bottle(&w, "bomb", &q, |p, _| f6_fork_bomb(&w, p, &q))
    });
    t.case("F6", "memory hog: stopped at its limit", || {
        let (_, q) = need()?;
        f6_in_own_bottle(&w, "hog", &q, |p, gvisor| f6_memory_hog(&w, p, gvisor))
    });
    t.case("F2", "egress daemon killed: no way out", || {
        let (p, _) = need()?;
        f2_kill_egress(&w, &p)
    });
    t.case("F2", "bundle killed: no way out", || {
        let (_, q) = need()?;
        f2_kill_bundle(&w, &q)
    });
    t.case("F2", "sessions end cleanly after the gate died", || {
        let Ok((mut ps, mut qs, p, q, pa, qa)) = shared else {
            return Err(Verdict::Fail("the shared bottles did not start".into()));
        };
        stop_all(&w, &[p, q]);
        for s in [&mut ps, &mut qs] {
            let st = s.wait(120)?;
            ensure(!s.text().contains("panicked"), || s.text())?;
            ensure(st.code().is_some(), || format!("`start` ended by {st}"))?;
        }
        for a in [&pa, &qa] {
            let left = w.settle(a, 10);
            ensure(left.is_empty(), || format!("left: {left:?}"))?;
        }
        w.no_leak(&format!("{}\n{}", ps.text(), qs.text()))?;
        Ok(String::new())
    });

    t.case("F3", "dockerd restarted mid-session", || {
        ready()?;
        f3(&w)
    });

    // Whatever failed, leave the engine without this run's bottles.
    let _ = w.cleanup();
    report(&format!(
        "{} passed, {} failed, {} skipped (fault suite, {:.0} s)",
        t.passed,
        t.failed,
        t.skipped,
        started.elapsed().as_secs_f32()
    ));
    assert!(t.failures.is_empty(), "failed: {:#?}", t.failures);
}
