//! Engine test of the dashboard end to end (run when `BOT_BOTTLE_ENGINE_TESTS=1`; otherwise
//! it is listed as ignored with a SKIPPED reason).
//!
//! A real supervised bottle; the agent asks for a route through MCP; the real
//! `bot-bottle dashboard`, in a detached tmux session driven with `send-keys` and read with
//! `capture-pane`, shows the request and approves it for one minute; the route then works
//! through egress until the grant expires, and is refused again after.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod engine_common;

use engine_common::upstream::Upstream;
use engine_common::world::World;
use engine_common::{KillOnPanic, bin, build_stub_image, docker_ok, engine_turn};

/// A private tmux server (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A private tmux server named `<name>-<pid>` running the real `bot-bottle dashboard` in
    /// `w`'s work dir, with the test's home and engine settings; it says how the dashboard
    /// exited and stays open.
    fn dashboard(w: &World, name: &str) -> Tmux {
        let tmux = Tmux {
            socket: format!("{name}-{}", std::process::id()),
        };
        let mut env: Vec<String> = w
            .cmd()
            .get_envs()
            .filter_map(|(k, v)| Some(format!("{}={}", k.to_str()?, v?.to_str()?)))
            .collect();
        env.push(format!(
            "PATH={}",
            std::env::var("PATH").unwrap_or_default()
        ));
        let cmd = format!(
            "cd '{}' && {} dashboard; echo \"dashboard exited $?\"; sleep 600",
            w.work.display(),
            bin().display()
        );
        let mut args = vec![
            "new-session",
            "-d",
            "-s",
            "dash",
            "-x",
            "140",
            "-y",
            "40",
            "--",
            "env",
        ];
        args.extend(env.iter().map(String::as_str));
        args.extend(["sh", "-c", cmd.as_str()]);
        let out = tmux.run(&args);
        assert!(out.status.success(), "{out:?}");
        tmux
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux runs; install it (`apt-get install tmux`)")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "dash:0.0"]).stdout)
            .into_owned()
    }

    fn wait_for(&self, text: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the dashboard never showed {text:?}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "dash:0.0"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
#[cfg_attr(
    not(engine_tests),
    ignore = "SKIPPED: engine test; build with BOT_BOTTLE_ENGINE_TESTS=1 and a Docker engine"
)]
fn the_dashboard_approves_for_one_minute_and_the_route_expires() {
    // One at a time: the dashboard shows every bottle on the engine, not only this home's.
    let _turn = engine_turn();
    build_stub_image();
    let w = World::supervised("dash");
    let session = w.start_session(&w.agent, 60);
    let id = session.id.clone();
    let upstream = Upstream::start(&w.certs, &id, &["upstream.test"]);
    assert_eq!(w.status(&id, "/base/x"), "200");
    assert_eq!(w.status(&id, "/granted/x"), "403");

    // The agent asks for the route.
    let req = w.propose(
        &id,
        "propose-egress-route",
        &serde_json::json!({"host": "upstream.test", "path_prefixes": ["/granted/"],
                            "reason": "the dashboard test needs it"}),
    );

    // The dashboard, in tmux, with the test's home and engine settings.
    let tmux = Tmux::dashboard(&w, "bb-dash-engine");

    let s = tmux.wait_for("route upstream.test paths /granted/", 60);
    assert!(s.contains("the dashboard test needs it"), "{s}");
    assert!(s.contains(&id), "the bottles pane lists the bottle: {s}");
    tmux.keys(&["a"]);
    tmux.wait_for(&format!("Approve {req}"), 10);
    tmux.keys(&["1"]);
    tmux.wait_for("(*) [m] for 1 minutes", 10);
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for(&format!("approved {req} for 1m"), 60);
    assert!(!s.contains("error:"), "{s}");

    // Live without a restart, for the minute.
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.status(&id, "/granted/x") != "200" {
        assert!(
            Instant::now() < deadline,
            "the approved path never went live"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(w.status(&id, "/granted/y"), "200");
    // Then refused again once the grant expired (a minute after the approval, plus the
    // time egress takes to notice).
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut served_while_live = 0;
    loop {
        match w.status(&id, "/granted/x").as_str() {
            "200" => served_while_live += 1,
            "403" => break,
            other => panic!("unexpected status {other}"),
        }
        assert!(Instant::now() < deadline, "the grant never expired");
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(
        served_while_live > 0,
        "the route was live before it expired"
    );
    assert_eq!(
        w.status(&id, "/base/x"),
        "200",
        "the bottle's own route stays"
    );
    // The expiry reaches the host's audit log through the dashboard's polling.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let audit = std::fs::read_to_string(w.home.join("queue/audit.jsonl")).unwrap_or_default();
        if audit
            .lines()
            .any(|l| l.contains("\"expired\"") && l.contains(&req))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no expired event in the audit: {audit}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    tmux.keys(&["q"]);
    let s = tmux.wait_for("dashboard exited", 10);
    assert!(s.contains("dashboard exited 0"), "{s}");
    drop(upstream);
    w.stop(session);
}

#[test]
#[cfg_attr(
    not(engine_tests),
    ignore = "SKIPPED: engine test; build with BOT_BOTTLE_ENGINE_TESTS=1 and a Docker engine"
)]
fn a_stop_from_the_dashboard_ends_the_start_that_owns_the_bottle() {
    let _turn = engine_turn();
    build_stub_image();
    let w = World::supervised("dashstop");
    // The owning `start` on a terminal, its output kept to read how it ended.
    let typescript = w.work.with_file_name("start.typescript");
    let mut start = Command::new("script");
    start.args([
        "-qfec",
        &format!("{} start --yes {}", bin().display(), w.agent),
        &typescript.display().to_string(),
    ]);
    for (k, v) in w.cmd().get_envs() {
        if let Some(v) = v {
            start.env(k, v);
        }
    }
    let mut child = start
        .current_dir(&w.work)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = KillOnPanic(vec![child.id()]);
    let id = w.wait_active(&w.agent, &mut child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !w.exec(&id, "test -f /tmp/started").0 {
        assert!(Instant::now() < deadline, "the session never started");
        std::thread::sleep(Duration::from_millis(300));
    }

    let tmux = Tmux::dashboard(&w, "bb-dash-stop-engine");
    tmux.wait_for(&format!("Refusals: {id}"), 60);
    tmux.keys(&["BTab"]);
    tmux.wait_for("a attach  s stop", 10);
    tmux.keys(&["s"]);
    tmux.wait_for(&format!("stop {id}? y/N"), 10);
    tmux.keys(&["y"]);
    let s = tmux.wait_for(&format!("stopped {id}; its `start`"), 60);
    assert!(!s.contains("error:"), "{s}");

    // The `start` that owns the bottle ends (under gVisor its exec would not end by itself),
    // keeps the state for `resume` and says why.
    let stopped_at = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(120),
            "start did not exit after the stop"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    println!(
        "start exited {status} {} ms after the dashboard's stop",
        stopped_at.elapsed().as_millis()
    );
    assert_eq!(status.code(), Some(1), "{status}");
    let said = std::fs::read_to_string(&typescript).unwrap_or_default();
    assert!(
        said.contains(&format!("bottle `{id}` was stopped outside this session")),
        "{said}"
    );
    assert!(said.contains(&format!("bot-bottle resume {id}")), "{said}");
    let state = w.home.join("state").join(&id);
    assert!(state.join(".preserve").exists(), "state kept");
    assert!(
        state.join("logs").exists(),
        "the bundle's logs were snapshotted"
    );
    let left = docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=dev.bot-bottle.identity={id}"),
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(left.trim(), "", "containers left: {left}");
    tmux.keys(&["q"]);
    let s = tmux.wait_for("dashboard exited", 10);
    assert!(s.contains("dashboard exited 0"), "{s}");
}
