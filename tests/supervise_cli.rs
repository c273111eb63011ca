//! `requests`, `approve` and `reject` against the fake `docker`: requests are pulled out of
//! the bundle with `docker exec`, queued under `<root>/queue/`, decisions handed back in on
//! stdin, and every step lands in the append-only audit log.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

const ID: &str = "0000000000001-00000a";

struct Env {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    bin: PathBuf,
    log: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("bbhome");
        let bin = tmp.path().join("bin");
        for d in [&home, &bin] {
            std::fs::create_dir_all(d).unwrap();
        }
        let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake/docker");
        std::fs::copy(&fake, bin.join("docker")).unwrap();
        let log = tmp.path().join("docker.log");
        std::fs::write(&log, "").unwrap();
        Env {
            _tmp: tmp,
            home,
            bin,
            log,
        }
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("bot-bottle").unwrap();
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let request = serde_json::json!({
            "id": ID, "created_at": "2026-01-01T00:00:00.000Z",
            "change": {"kind": "route", "host": "example.com", "path_prefixes": ["/api/"]},
            "reason": "fetch the docs"
        });
        cmd.env_clear()
            .env("PATH", path)
            .env("HOME", &self.home)
            .env("BOT_BOTTLE_HOME", &self.home)
            .env("FAKE_DOCKER_LOG", &self.log)
            .env(
                "FAKE_PS_JSON",
                r#"{"Names":"bot-bottle-sidecars-dev-1","State":"running","Labels":"dev.bot-bottle.identity=dev-1,dev.bot-bottle.service=sidecars"}"#,
            )
            .env("FAKE_SUPERVISE_PENDING", format!("{request}\n"));
        cmd
    }

    fn audit_events(&self) -> Vec<String> {
        std::fs::read_to_string(self.home.join("queue/audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }
}

#[test]
fn list_approve_and_audit() {
    let env = Env::new();
    let out = env.cmd().args(["requests", "--json"]).assert().success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v[0]["bottle"], "dev-1");
    assert_eq!(v[0]["request"]["id"], ID);
    assert!(env.home.join(format!("queue/{ID}/request.json")).is_file());

    let out = env.cmd().args(["requests"]).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        text.contains("route example.com paths /api/") && text.contains("fetch the docs"),
        "{text}"
    );

    env.cmd()
        .args(["approve", ID, "--for", "10m"])
        .assert()
        .success();
    let calls = std::fs::read_to_string(&env.log).unwrap();
    assert!(
        calls.lines().any(|l| l.starts_with(
            "docker exec -i bot-bottle-sidecars-dev-1 /usr/local/bin/bot-bottle-supervise decide"
        )),
        "{calls}"
    );
    let sent: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.log.with_extension("log.decision")).unwrap())
            .unwrap();
    assert_eq!(sent["id"], ID);
    assert_eq!(sent["verdict"], "approved");
    assert_eq!(sent["lifetime"], serde_json::json!({"seconds": 600}));

    // Decided once; the bottle still lists it until its spool catches up, but the queue knows.
    let out = env.cmd().args(["approve", ID]).assert().code(1);
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        err.starts_with("bot-bottle: error:") && err.contains("already decided"),
        "{err}"
    );
    assert_eq!(env.audit_events(), ["requested", "approved"]);
}

#[test]
fn approving_a_queued_request_is_one_docker_exec() {
    let env = Env::new();
    env.cmd().args(["requests"]).assert().success();
    std::fs::write(&env.log, "").unwrap();
    env.cmd().args(["approve", ID]).assert().success();
    let calls = std::fs::read_to_string(&env.log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(
        calls[0].starts_with(
            "docker exec -i bot-bottle-sidecars-dev-1 /usr/local/bin/bot-bottle-supervise decide"
        ),
        "{calls:?}"
    );
    assert_eq!(env.audit_events(), ["requested", "approved"]);
}

#[test]
fn reject_carries_the_reason() {
    let env = Env::new();
    env.cmd()
        .args(["reject", ID, "--reason", "use the mirror"])
        .assert()
        .success();
    let sent: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.log.with_extension("log.decision")).unwrap())
            .unwrap();
    assert_eq!(sent["verdict"], "rejected");
    assert_eq!(sent["note"], "use the mirror");
    assert_eq!(env.audit_events(), ["requested", "rejected"]);
}

#[test]
fn approve_once_hands_a_once_grant_in() {
    let env = Env::new();
    env.cmd().args(["approve", ID, "--once"]).assert().success();
    let sent: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.log.with_extension("log.decision")).unwrap())
            .unwrap();
    assert_eq!(sent["lifetime"], "once");
    assert_eq!(env.audit_events(), ["requested", "approved"]);
}

#[test]
fn unsupported_and_bad_input_is_one_error_line() {
    let env = Env::new();
    for args in [
        vec!["approve", ID, "--save"],
        vec!["approve", ID, "--for", "soon"],
        vec!["approve", "../../etc", "--for", "1m"],
        vec!["reject", ID, "--reason", "two\nlines"],
    ] {
        let out = env.cmd().args(&args).assert().code(1);
        let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            err.starts_with("bot-bottle: error:") && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    // Nothing was decided by any of them.
    assert!(!env.home.join(format!("queue/{ID}/decision.json")).exists());
}

#[test]
fn approve_save_shows_the_change_asks_and_writes_the_bottle_file() {
    let env = Env::new();
    for d in ["bottles", "agents"] {
        std::fs::create_dir_all(env.home.join(d)).unwrap();
    }
    let bottle = env.home.join("bottles/dev.md");
    let before = "---\n# mine\negress:\n  routes:\n    - host: a.test\n---\nbody\n";
    std::fs::write(&bottle, before).unwrap();
    let st = bot_bottle::state::StateDir::create(&env.home, "dev-1").unwrap();
    st.write_metadata(&bot_bottle::state::Metadata {
        identity: "dev-1".into(),
        agent: "worker".into(),
        bottle: "dev".into(),
        cwd: env.home.clone(),
        copy_cwd: false,
        started_at: "2026-01-01T00:00:00Z".into(),
        compose_project: "bot-bottle-dev-1".into(),
        backend: "docker".into(),
    })
    .unwrap();
    // No terminal and no `--yes`: the diff is shown, nothing is decided or written.
    let out = env.cmd().args(["approve", ID, "--save"]).assert().code(1);
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("+     - host: example.com"), "{err}");
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(std::fs::read_to_string(&bottle).unwrap(), before);
    assert!(!env.home.join(format!("queue/{ID}/decision.json")).exists());

    env.cmd()
        .args(["approve", ID, "--save", "--yes"])
        .assert()
        .success();
    let after = std::fs::read_to_string(&bottle).unwrap();
    assert_eq!(
        after,
        "---\n# mine\negress:\n  routes:\n    - host: a.test\n    - host: example.com\n      path_allowlist: [\"/api/\"]\n---\nbody\n"
    );
    let sent: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.log.with_extension("log.decision")).unwrap())
            .unwrap();
    assert_eq!(sent["lifetime"], "saved");
    assert_eq!(env.audit_events(), ["requested", "approved", "saved"]);
}

/// `bot-bottle-supervise submit` (what the dashboard runs to turn a refusal into a request)
/// queues a checked request that `pending` then lists; bad input queues nothing.
#[test]
fn submit_queues_a_checked_request() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let spool_arg = spool.display().to_string();
    let out = Command::cargo_bin("bot-bottle-supervise")
        .unwrap()
        .args(["submit", "--spool", &spool_arg, "--host", "API.example.com"])
        .args([
            "--path",
            "/v1/",
            "--method",
            "GET",
            "--reason",
            "refused GET",
        ])
        .assert()
        .success();
    let id = String::from_utf8_lossy(&out.get_output().stdout)
        .trim()
        .to_string();
    let out = Command::cargo_bin("bot-bottle-supervise")
        .unwrap()
        .args(["pending", "--spool", &spool_arg])
        .assert()
        .success();
    let line = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    let r: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(r["id"], id.as_str());
    assert_eq!(r["change"]["host"], "api.example.com");
    assert_eq!(r["change"]["path_prefixes"][0], "/v1/");
    assert_eq!(r["reason"], "refused GET");

    Command::cargo_bin("bot-bottle-supervise")
        .unwrap()
        .args(["submit", "--spool", &spool_arg, "--host", "example.com"])
        .args(["--path", "no-slash", "--reason", "x"])
        .assert()
        .failure();
    let out = Command::cargo_bin("bot-bottle-supervise")
        .unwrap()
        .args(["pending", "--spool", &spool_arg])
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout)
            .lines()
            .count(),
        1
    );
}

#[test]
fn an_approved_image_change_keeps_state_tears_down_and_names_the_resume_command() {
    let env = Env::new();
    let st = bot_bottle::state::StateDir::create(&env.home, "dev-1").unwrap();
    st.write_metadata(&bot_bottle::state::Metadata {
        identity: "dev-1".into(),
        agent: "worker".into(),
        bottle: "dev".into(),
        cwd: env.home.clone(),
        copy_cwd: false,
        started_at: "2026-01-01T00:00:00Z".into(),
        compose_project: "bot-bottle-dev-1".into(),
        backend: "docker".into(),
    })
    .unwrap();
    let request = serde_json::json!({
        "id": ID, "created_at": "2026-01-01T00:00:00.000Z",
        "change": {"kind": "image", "dockerfile": "FROM debian\nRUN apt-get install -y jq\n"},
        "reason": "needs jq"
    });
    let out = env
        .cmd()
        .env("FAKE_SUPERVISE_PENDING", format!("{request}\n"))
        .env("FAKE_PS_NAMES", "bot-bottle-dev-1")
        .args(["approve", ID])
        .assert()
        .success();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("`bot-bottle resume dev-1`"), "{err}");
    // The decision reached the waiting agent first, with no route lifetime.
    let sent: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.log.with_extension("log.decision")).unwrap())
            .unwrap();
    assert_eq!(sent["verdict"], "approved");
    assert!(sent.get("lifetime").is_none(), "{sent}");
    let calls: Vec<String> = std::fs::read_to_string(&env.log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let at = |needle: &str| {
        calls
            .iter()
            .position(|c| c.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in {calls:#?}"))
    };
    let decided = at("bot-bottle-supervise decide");
    let found = at("label=dev.bot-bottle.service=agent");
    let copied = at("docker cp bot-bottle-dev-1:/home/node/.claude/projects -");
    let down = at("bot-bottle-dev-1 -f");
    assert!(
        decided < found && found < copied && copied < down,
        "{calls:#?}"
    );
    assert!(calls[down].contains(" down "), "{}", calls[down]);
    // The state is kept with the new Dockerfile, which `resume` builds.
    let state = env.home.join("state/dev-1");
    assert_eq!(
        std::fs::read_to_string(state.join("Dockerfile")).unwrap(),
        "FROM debian\nRUN apt-get install -y jq\n"
    );
    assert!(state.join(".preserve").exists());
    assert_eq!(env.audit_events(), ["requested", "approved", "applied"]);
}

#[test]
fn refusals_of_egress_and_the_git_gate_are_listed_and_followed() {
    let env = Env::new();
    let logs = env.home.join("bundle-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let line = |time: &str, method: &str, host: &str, path: &str, layer: &str, rule: &str| {
        format!(
            "{}\n",
            serde_json::json!({"time": time, "host": host, "method": method, "path": path,
                               "verdict": "deny", "layer": layer, "rule": rule, "status": 403})
        )
    };
    std::fs::write(
        logs.join("egress-audit.jsonl"),
        [
            line(
                "2026-01-01T00:00:01.000Z",
                "GET",
                "pypi.org",
                "/simple/",
                "allowlist",
                "host-not-in-routes",
            ),
            line(
                "2026-01-01T00:00:03.000Z",
                "GET",
                "pypi.org",
                "/simple/",
                "allowlist",
                "host-not-in-routes",
            ),
        ]
        .concat(),
    )
    .unwrap();
    std::fs::write(
        logs.join("git-gate-audit.jsonl"),
        line(
            "2026-01-01T00:00:02.000Z",
            "PUSH",
            "github.com",
            "/proj.git/refs/heads/main",
            "git-gate",
            "ref-force",
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = env
            .cmd()
            .env("FAKE_AUDIT_DIR", &logs)
            .args(args)
            .assert()
            .success();
        String::from_utf8_lossy(&out.get_output().stdout).into_owned()
    };

    // Recent, grouped, oldest first, both gates.
    let v: serde_json::Value =
        serde_json::from_str(&run(&["requests", "--refusals", "--json"])).unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 2, "{v:#}");
    assert_eq!(list[0]["layer"], "git-gate");
    assert_eq!(list[0]["rule"], "ref-force");
    assert_eq!(list[0]["method"], "PUSH");
    assert_eq!(list[0]["bottle"], "dev-1");
    assert!(
        list[0]["reason"].as_str().unwrap().contains("ref policy"),
        "{v:#}"
    );
    assert_eq!(list[1]["host"], "pypi.org");
    assert_eq!(list[1]["count"], 2);
    let text = run(&["requests", "--refusals", "--bottle", "dev-1"]);
    assert!(
        text.contains("dev-1\tPUSH github.com/proj.git/refs/heads/main\tx1\tgit-gate/ref-force"),
        "{text}"
    );
    // The requests listing itself is unchanged by all this.
    let v: serde_json::Value = serde_json::from_str(&run(&["requests", "--json"])).unwrap();
    assert_eq!(v[0]["request"]["id"], ID);
    assert_eq!(v[0].as_object().unwrap().len(), 2, "{v:#}");

    // Followed: each refusal on its own line as it happens.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bot-bottle"))
        .env_clear()
        .envs(
            env.cmd()
                .env("FAKE_AUDIT_DIR", &logs)
                .get_envs()
                .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))),
        )
        .args(["requests", "--refusals", "--follow", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stdout).lines() {
            if tx.send(l.unwrap()).is_err() {
                break;
            }
        }
    });
    let next = || {
        let l = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("a followed refusal");
        serde_json::from_str::<serde_json::Value>(&l).unwrap()
    };
    let first: Vec<serde_json::Value> = (0..3).map(|_| next()).collect();
    let layers: Vec<&str> = first.iter().map(|e| e["layer"].as_str().unwrap()).collect();
    assert_eq!(layers, ["allowlist", "git-gate", "allowlist"], "time order");
    assert!(first.iter().all(|e| e["count"] == 1));
    // A new git-gate refusal arrives live.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(logs.join("git-gate-audit.jsonl"))
        .unwrap();
    std::io::Write::write_all(
        &mut f,
        line(
            "2026-01-01T00:00:09.000Z",
            "PUSH",
            "github.com",
            "/proj.git/refs/heads/x",
            "git-gate",
            "secret-scan:aws-access-key-id",
        )
        .as_bytes(),
    )
    .unwrap();
    let live = next();
    assert_eq!(live["rule"], "secret-scan:aws-access-key-id");
    assert_eq!(live["path"], "/proj.git/refs/heads/x");
    child.kill().unwrap();
    child.wait().unwrap();
}
