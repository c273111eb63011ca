//! The real `bot-bottle dashboard` in a detached tmux session, driven with `send-keys` and
//! read with `capture-pane` (SPEC F-DASH): a request queued in a bottle shows in the
//! requests pane, is approved for one minute from the keyboard, and the decision reaches the
//! bottle and the host queue; attach opens the session in a right-hand tmux pane.
//!
//! A bottle whose `start` runs in another tmux session is stopped from the dashboard: that
//! `start` notices, snapshots, keeps the state for `resume`, tears down and exits saying so.
//!
//! The engine here is the recording fake `docker` (tests/fake/docker); the route going live
//! in a real egress and expiring is the engine test's part (`tests/engine_supervise.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const ID: &str = "0000000000001-00000a";

/// A private tmux server (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux runs; install it (`apt-get install tmux`)")
    }

    fn screen(&self) -> String {
        self.screen_of("dash:0.0")
    }

    fn screen_of(&self, target: &str) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", target]).stdout)
            .into_owned()
    }

    /// Wait until pane `target` shows `text`.
    fn wait_in(&self, target: &str, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen_of(target);
            if s.contains(text) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{target} never showed {text:?}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A detached session `name` running `cmd` under `sh` with exactly `env` added.
    fn spawn(&self, name: &str, env: &[String], cmd: &str) {
        let mut args = vec!["new-session", "-d", "-s", name, "-x", "120", "-y", "36"];
        args.extend(["--", "env"]);
        args.extend(env.iter().map(String::as_str));
        args.extend(["sh", "-c", cmd]);
        let out = self.run(&args);
        assert!(out.status.success(), "{out:?}");
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "dash:0.0"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success());
    }

    /// Wait until the dashboard's pane shows `text` (the dashboard polls every second).
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the dashboard never showed {text:?}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn setup(tmp: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let home = tmp.join("home");
    let bin = tmp.join("bin");
    for d in [&home, &bin] {
        std::fs::create_dir_all(d).unwrap();
    }
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake/docker");
    std::fs::copy(&fake, bin.join("docker")).unwrap();
    let log = tmp.join("docker.log");
    std::fs::write(&log, "").unwrap();
    (home, bin, log)
}

#[test]
fn a_queued_request_is_approved_for_one_minute_from_the_dashboard() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, bin, log) = setup(tmp.path());
    let request = serde_json::json!({
        "id": ID, "created_at": "2026-01-01T00:00:00.000Z",
        "change": {"kind": "route", "host": "example.com", "path_prefixes": ["/api/"]},
        "reason": "fetch the docs"
    });
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let tmux = Tmux {
        socket: format!("bb-dash-test-{}", std::process::id()),
    };
    let env = [
        format!("PATH={path}"),
        format!("HOME={}", home.display()),
        format!("BOT_BOTTLE_HOME={}", home.display()),
        format!("FAKE_DOCKER_LOG={}", log.display()),
        format!(
            "FAKE_PS_JSON={}\n{}\n",
            r#"{"Names":"bot-bottle-dev-1","State":"running","Labels":"dev.bot-bottle.identity=dev-1,dev.bot-bottle.service=agent,dev.bot-bottle.agent=dev"}"#,
            r#"{"Names":"bot-bottle-sidecars-dev-1","State":"running","Labels":"dev.bot-bottle.identity=dev-1,dev.bot-bottle.service=sidecars"}"#
        ),
        format!("FAKE_SUPERVISE_PENDING={request}\n"),
    ];
    let mut args = vec!["new-session", "-d", "-s", "dash", "-x", "120", "-y", "36"];
    // Through `env`: tmux takes `PATH` for a new pane from elsewhere, whatever `-e` says.
    args.extend(["--", "env"]);
    args.extend(env.iter().map(String::as_str));
    // A shell holds the pane open after the dashboard ends, so its exit code can be read.
    let cmd = format!(
        "{} dashboard; echo \"dashboard exited $?\"; sleep 600",
        env!("CARGO_BIN_EXE_bot-bottle")
    );
    args.extend(["sh", "-c", cmd.as_str()]);
    let out = tmux.run(&args);
    assert!(out.status.success(), "{out:?}");

    // The queued request is shown, with its bottle and reason.
    let s = tmux.wait_for("route example.com paths /api/");
    assert!(s.contains("Pending requests (1)"), "{s}");
    assert!(
        s.contains("dev-1  route example.com paths /api/  fetch the docs"),
        "{s}"
    );

    // Approve for 1 minute: `a`, type 1 (the minutes field), Enter.
    tmux.keys(&["a"]);
    tmux.wait_for(&format!("Approve {ID}"));
    tmux.keys(&["1"]);
    tmux.wait_for("(*) [m] for 1 minutes");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for(&format!("approved {ID} for 1m"));
    assert!(!s.contains("error:"), "{s}");

    // The decision went into the bottle, and the host queue recorded it.
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls.lines().any(|l| l.starts_with(
            "docker exec -i bot-bottle-sidecars-dev-1 /usr/local/bin/bot-bottle-supervise decide"
        )),
        "{calls}"
    );
    let decision: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(home.join(format!("queue/{ID}/decision.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(decision["verdict"], "approved");
    assert_eq!(decision["lifetime"]["seconds"], 60);
    let audit = std::fs::read_to_string(home.join("queue/audit.jsonl")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"approved\"") && l.contains(ID)),
        "{audit}"
    );

    // Inside tmux, attach opens the session in a new pane to the right, and a second attach
    // reuses that pane. Panes stay after their command ends, so they can be inspected.
    assert!(
        tmux.run(&["set-option", "-g", "remain-on-exit", "on"])
            .status
            .success()
    );
    tmux.keys(&["Tab", "Tab"]);
    tmux.wait_for("a attach  s stop");
    tmux.keys(&["a"]);
    let s = tmux.wait_for("attach dev-1 in pane %");
    assert!(!s.contains("error:"), "{s}");
    let panes = || {
        let out = tmux.run(&[
            "list-panes",
            "-t",
            "dash:0",
            "-F",
            "#{pane_id} #{pane_left} #{pane_start_command}",
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = panes();
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 2, "{first}");
    let session: Vec<&str> = lines[1].splitn(3, ' ').collect();
    assert_ne!(session[1], "0", "the session pane is to the right: {first}");
    assert!(session[2].contains("exec dev-1 -- sh -c"), "{first}");
    assert!(session[2].contains("--continue"), "resume first: {first}");
    let pane_id = session[0].to_string();
    tmux.keys(&["a"]);
    std::thread::sleep(Duration::from_millis(500));
    tmux.wait_for(&format!("attach dev-1 in pane {pane_id}"));
    let second = panes();
    assert_eq!(second.lines().count(), 2, "the pane was reused: {second}");

    // `q` ends the dashboard cleanly.
    tmux.keys(&["q"]);
    let s = tmux.wait_for("dashboard exited");
    assert!(s.contains("dashboard exited 0"), "{s}");
}

#[test]
fn stopping_a_bottle_from_the_dashboard_ends_the_start_that_owns_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, bin, log) = setup(tmp.path());
    let work = tmp.path().join("work");
    std::fs::create_dir_all(home.join("bottles")).unwrap();
    std::fs::create_dir_all(home.join("agents")).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(
        home.join("bottles/dev.md"),
        "---\nenv:\n  PLAIN: \"x\"\n---\n",
    )
    .unwrap();
    std::fs::write(
        home.join("agents/worker.md"),
        "---\nbottle: dev\n---\nWork.\n",
    )
    .unwrap();
    let stopped = tmp.path().join("agent-stopped");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let tmux = Tmux {
        socket: format!("bb-dash-stop-{}", std::process::id()),
    };
    let mut env = vec![
        format!("PATH={path}"),
        format!("HOME={}", work.display()),
        format!("BOT_BOTTLE_HOME={}", home.display()),
        "BOT_BOTTLE_IMAGE=fake-agent:1".to_string(),
        "BOT_BOTTLE_SIDECAR_IMAGE=fake-sidecar:1".to_string(),
        format!("FAKE_DOCKER_LOG={}", log.display()),
        // As under gVisor: the session's exec never ends by itself when the agent stops.
        "FAKE_SESSION_HANG=1".to_string(),
        format!("FAKE_STOPPED={}", stopped.display()),
    ];
    // The owning `start`, in its own tmux session; its pane stays to show how it ended.
    tmux.spawn(
        "start",
        &env,
        &format!(
            "cd '{}' && {} start --yes worker; echo \"start exited $?\"; sleep 600",
            work.display(),
            env!("CARGO_BIN_EXE_bot-bottle")
        ),
    );
    tmux.wait_in("start:0.0", "session: claude");
    let id = std::fs::read_dir(home.join("state"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().into_string().unwrap())
        .next()
        .expect("a state dir");
    let state = home.join("state").join(&id);

    // The dashboard lists that bottle and stops it.
    env.push(format!(
        "FAKE_PS_JSON={}\n{}\n",
        format_args!(
            r#"{{"Names":"bot-bottle-{id}","State":"running","Labels":"dev.bot-bottle.identity={id},dev.bot-bottle.service=agent,dev.bot-bottle.agent=worker"}}"#
        ),
        format_args!(
            r#"{{"Names":"bot-bottle-sidecars-{id}","State":"running","Labels":"dev.bot-bottle.identity={id},dev.bot-bottle.service=sidecars"}}"#
        ),
    ));
    env.push(format!("FAKE_PS_NAMES=bot-bottle-{id}"));
    tmux.spawn(
        "dash",
        &env,
        &format!(
            "cd '{}' && {} dashboard; echo \"dashboard exited $?\"; sleep 600",
            work.display(),
            env!("CARGO_BIN_EXE_bot-bottle")
        ),
    );
    tmux.wait_for(&format!("Refusals: {id}"));
    tmux.keys(&["BTab"]);
    tmux.wait_for("a attach  s stop");
    tmux.keys(&["s"]);
    tmux.wait_for(&format!("stop {id}? y/N"));
    tmux.keys(&["y"]);
    let s = tmux.wait_for(&format!("stopped {id}; its `start` saves the transcript"));
    assert!(!s.contains("error:"), "{s}");

    // The owning `start` noticed, finished like after any non-zero exit, and said why.
    let s = tmux.wait_in("start:0.0", "start exited");
    assert!(s.contains("start exited 1"), "{s}");
    // Long lines wrap in the pane.
    let s = s.replace('\n', "");
    assert!(
        s.contains(&format!("bottle `{id}` was stopped outside this session")),
        "{s}"
    );
    assert!(
        s.contains(&format!("state kept: `bot-bottle resume {id}`")),
        "{s}"
    );
    assert!(state.join(".preserve").exists(), "the state is kept");
    assert!(!state.join(".stop-requested").exists());
    assert!(state.join("metadata.json").exists());
    let calls = std::fs::read_to_string(&log).unwrap();
    let at = |needle: &str| {
        calls
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` call in:\n{calls}"))
    };
    let stop = at(&format!("docker stop --time 2 bot-bottle-{id}"));
    let snapshot = at(&format!("docker cp bot-bottle-{id}:"));
    let down = at(" down ");
    assert!(stop < snapshot && snapshot < down, "{calls}");
    assert!(
        !calls.lines().any(|l| l.starts_with("docker rm")),
        "the dashboard removed nothing itself: {calls}"
    );
    // The bottle is still listed by the fake engine; the dashboard stays usable.
    tmux.keys(&["q"]);
    let s = tmux.wait_for("dashboard exited");
    assert!(s.contains("dashboard exited 0"), "{s}");
}
