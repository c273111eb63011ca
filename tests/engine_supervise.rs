//! Engine test of supervise in a real bottle (run when `BOT_BOTTLE_ENGINE_TESTS=1`; otherwise
//! it is listed as ignored with a SKIPPED reason).
//!
//! From inside the agent container, plain `curl` speaks MCP's streamable HTTP to supervise
//! through the relay (127.0.0.1:9100): it asks for a route and waits; the test approves it
//! with the real CLI; the wait answers `approved` and the path becomes reachable through
//! egress with no restart; a `--once` grant serves exactly one request.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod engine_common;

use engine_common::mcp::mcp_call;
use engine_common::upstream::Upstream;
use engine_common::world::World;
use engine_common::{STUB_IMAGE, build_stub_image, engine_turn, wait_exit};

#[test]
#[cfg_attr(
    not(engine_tests),
    ignore = "SKIPPED: engine test; build with BOT_BOTTLE_ENGINE_TESTS=1 and a Docker engine"
)]
fn an_agent_asks_through_mcp_the_operator_approves_and_the_route_goes_live() {
    let _turn = engine_turn();
    build_stub_image();
    let w = World::supervised("sup");
    let mut session = w.start_session(&w.agent, 60);
    let id = session.id.clone();
    // The provider's config registers supervise at the relay's port.
    let claude = w.exec(&id, "cat /home/node/.claude.json").1;
    let claude: serde_json::Value = serde_json::from_str(&claude).unwrap();
    assert_eq!(
        claude["mcpServers"]["supervise"]["url"],
        "http://127.0.0.1:9100/mcp"
    );

    // The upstream, on the bottle's egress network (reached only through egress).
    let upstream = Upstream::start(&w.certs, &id, &["upstream.test"]);
    assert_eq!(w.status(&id, "/base/x"), "200");
    assert_eq!(w.status(&id, "/granted/x"), "403");
    // The host sees that refusal through the engine, as the dashboard reads it.
    let runner = bot_bottle::runner::RealRunner;
    let seen = bot_bottle::requests::recent_refusals(&runner, &id, 10).unwrap();
    let r = seen
        .iter()
        .find(|e| e.path == "/granted/x")
        .unwrap_or_else(|| panic!("{seen:?}"));
    assert_eq!(
        (r.layer.as_str(), r.rule.as_str()),
        ("path-allowlist", "path-not-allowed")
    );
    assert_eq!(
        (r.bottle.as_str(), r.host.as_str()),
        (id.as_str(), "upstream.test")
    );
    let (followed, next) =
        bot_bottle::requests::follow_refusals(&runner, &id, Default::default()).unwrap();
    assert!(followed.iter().any(|e| e.path == "/granted/x") && next.egress > 0);

    // The agent asks, then waits (in the background, as a blocked tool call).
    let req = w.propose(
        &id,
        "propose-egress-route",
        &serde_json::json!({"host": "upstream.test", "path_prefixes": ["/granted/"],
                            "reason": "the engine test needs it"}),
    );
    let waiter = w
        .exec_cmd(
            &id,
            &mcp_call(
                "wait-for-decision",
                &serde_json::json!({"id": req, "timeout_seconds": 180}),
            ),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    session.kill.0.push(waiter.id());
    std::thread::sleep(Duration::from_secs(2));
    let queued = w.ok(&["requests", "--json"]);
    assert!(queued.contains(&req), "{queued}");
    let mut waiter = waiter;
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "the wait returned before any decision"
    );

    // The operator approves through the CLI; the waiting call answers `approved`.
    w.ok(&["approve", &req, "--session"]);
    let out = waiter.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("\\\"status\\\":\\\"approved\\\"")
            || text.contains("\"status\":\"approved\""),
        "{text}"
    );
    // Live without a restart (egress picks the grants file up within its poll).
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.status(&id, "/granted/x") != "200" {
        assert!(
            Instant::now() < deadline,
            "the approved path never went live"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A once grant serves exactly one request.
    let once = w.propose(
        &id,
        "propose-egress-route",
        &serde_json::json!({"host": "upstream.test", "path_prefixes": ["/once/"],
                            "methods": ["GET"], "reason": "one download"}),
    );
    w.ok(&["approve", &once, "--once"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut first = w.status(&id, "/once/a");
    while first == "403" {
        assert!(Instant::now() < deadline, "the once grant never went live");
        std::thread::sleep(Duration::from_millis(100));
        first = w.status(&id, "/once/a");
    }
    assert_eq!(first, "200");
    assert_eq!(w.status(&id, "/once/a"), "403");
    assert_eq!(w.status(&id, "/once/b"), "403");
    let served = upstream.log();
    assert_eq!(served.matches("REQ GET /once/").count(), 1, "{served}");
    // The session grant is untouched by the once grant's end.
    assert_eq!(w.status(&id, "/granted/y"), "200");
    let audit = std::fs::read_to_string(w.home.join("queue/audit.jsonl")).unwrap();
    assert!(audit.contains(&once), "{audit}");

    drop(upstream);
    w.stop(session);
}

#[test]
#[cfg_attr(
    not(engine_tests),
    ignore = "SKIPPED: engine test; build with BOT_BOTTLE_ENGINE_TESTS=1 and a Docker engine"
)]
fn an_approved_image_change_ends_the_bottle_and_resume_runs_the_new_image() {
    let _turn = engine_turn();
    build_stub_image();
    let w = World::supervised("sup");
    let mut session = w.start_session(&w.agent, 120);
    let id = session.id.clone();
    w.exec(&id, "mkdir -p /home/node/.claude/projects/p && echo TRANSCRIPT-MARK > /home/node/.claude/projects/p/s.jsonl");
    let dockerfile =
        format!("FROM {STUB_IMAGE}\nUSER root\nRUN touch /rebuilt-marker\nUSER node\n");
    let req = w.propose(
        &id,
        "propose-image-change",
        &serde_json::json!({"dockerfile": dockerfile, "reason": "needs a marker"}),
    );
    let out = w
        .cmd()
        .args(["approve", &req])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("bot-bottle resume {id}")), "{err}");
    // The session ended, the bottle is gone, its state is kept with the new Dockerfile.
    wait_exit(&mut session.child, 120);
    let state = w.home.join("state").join(&id);
    assert!(state.join(".preserve").exists());
    assert_eq!(
        std::fs::read_to_string(state.join("Dockerfile")).unwrap(),
        dockerfile
    );
    let transcript = state.join("transcript");
    assert!(
        std::fs::read_dir(&transcript).is_ok(),
        "no transcript in {}",
        state.display()
    );

    // `resume` builds the per-bottle image and runs on it (no image override now).
    let mut resumed = w
        .pty(&format!("resume --yes {id}"))
        .env_remove("BOT_BOTTLE_IMAGE")
        .spawn()
        .unwrap();
    session.kill.0.push(resumed.id());
    let deadline = Instant::now() + Duration::from_secs(600);
    while !w.exec(&id, "test -f /tmp/started").0 {
        if let Ok(Some(st)) = resumed.try_wait() {
            panic!("resume exited early: {st}");
        }
        assert!(
            Instant::now() < deadline,
            "the resumed session never started"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        w.exec(&id, "test -f /rebuilt-marker").0,
        "not the rebuilt image"
    );
    assert!(
        w.exec(&id, "grep -r TRANSCRIPT-MARK /home/node/.claude/projects")
            .0,
        "the transcript did not come back"
    );
    w.exec(&id, "echo 0 > /tmp/stop");
    let st = wait_exit(&mut resumed, 120);
    assert!(st.success(), "resume exited with {st}");
    let _ = Command::new("docker")
        .args(["rmi", "-f", &format!("bot-bottle-rebuilt-{id}:latest")])
        .output();
}
