//! CLI tests for a newcomer's first hour, through the real binary: broken agent files, error
//! messages that keep the path and the point, `init`, `info` against the preflight, honest
//! help for what is not built, completion of agent names, and the README's first command
//! leaving the source tree untouched.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary with a controlled environment: no engine socket, fixed home.
fn bb(home: &Path, cwd: &Path) -> Command {
    let mut cmd = Command::cargo_bin("bot-bottle").unwrap();
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", cwd)
        .env("BOT_BOTTLE_HOME", home)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .current_dir(cwd);
    cmd
}

fn stderr_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

fn stdout_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

fn one_error_line(stderr: &str) -> String {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("bot-bottle: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "expected one error line in:\n{stderr}");
    errors[0].to_string()
}

/// A home with one bottle `dev` (given frontmatter) and the given agent files.
fn home_with(bottle_yaml: &str, agents: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join("bottles")).unwrap();
    std::fs::create_dir_all(home.join("agents")).unwrap();
    std::fs::write(
        home.join("bottles/dev.md"),
        format!("---\n{bottle_yaml}---\n"),
    )
    .unwrap();
    for (name, text) in agents {
        std::fs::write(home.join(format!("agents/{name}.md")), text).unwrap();
    }
    (tmp, home)
}

/// Every file under `root` with its contents.
fn snapshot(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
                out.push((p.display().to_string(), Vec::new()));
            } else {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// A fake engine socket answering `/info` (no gVisor), so the preflight's probe runs and
/// caches its answer.
fn fake_engine(dir: &Path) -> PathBuf {
    use std::io::{Read as _, Write as _};
    let sock = dir.join("engine.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let body = r#"{"Runtimes":{"runc":{"path":"runc"}}}"#;
            let _ = write!(
                c,
                "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    sock
}

#[test]
fn readme_first_command_leaves_examples_home_untouched() {
    // Exactly the README's form: a relative BOT_BOTTLE_HOME from the repository root.
    let tmp = tempfile::tempdir().unwrap();
    let sock = fake_engine(tmp.path());
    let examples = repo().join("examples/home");
    let before = snapshot(&examples);
    let out = bb(Path::new("examples/home"), &repo())
        .env("HOME", tmp.path())
        .env("DOCKER_HOST", format!("unix://{}", sock.display()))
        .args(["start", "--dry-run", "reviewer"])
        .assert()
        .success();
    let err = stderr_of(&out);
    assert!(
        err.contains("runtime    runc\n"),
        "the probe answered:\n{err}"
    );
    assert_eq!(
        before,
        snapshot(&examples),
        "the dry run wrote under examples/home"
    );
    assert!(!examples.join("cache").exists());
    // The probe's cache went to the user's cache dir instead.
    assert!(tmp.path().join(".cache/bot-bottle/engine-probe").is_file());
}

#[test]
fn one_broken_agent_does_not_break_the_others() {
    let (tmp, home) = home_with(
        "",
        &[
            ("good", "---\nbottle: dev\n---\nGood.\n"),
            ("bad", "---\nbottle: dev\nbotle: x\n---\n"),
            ("orphan", "---\nbottle: nope\n---\n"),
        ],
    );
    // Another agent starts, with a warning naming the broken file, its key and the fix.
    let out = bb(&home, tmp.path())
        .args(["start", "--dry-run", "good"])
        .assert()
        .success();
    let err = stderr_of(&out);
    let bad = home.join("agents/bad.md").display().to_string();
    assert!(
        err.lines().any(
            |l| l.starts_with("bot-bottle: warning: agent `bad` is broken")
                && l.contains(&bad)
                && l.contains("`botle`")
                && l.contains("did you mean `bottle`?")
        ),
        "{err}"
    );
    assert!(
        err.contains("orphan.md: `bottle`: no bottle named `nope`"),
        "{err}"
    );
    // `list available`: startable names on stdout, the broken ones listed on stderr.
    let out = bb(&home, tmp.path())
        .args(["list", "available"])
        .assert()
        .success();
    assert_eq!(stdout_of(&out), "good\n");
    let err = stderr_of(&out);
    assert!(err.contains("broken: bad ("), "{err}");
    assert!(err.contains("broken: orphan ("), "{err}");
    let out = bb(&home, tmp.path())
        .args(["list", "available", "--json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let entries: Vec<(&str, bool)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a["broken"].as_bool().unwrap()))
        .collect();
    assert_eq!(entries, [("good", false), ("bad", true), ("orphan", true)]);
    assert!(v[1]["error"].as_str().unwrap().contains("`botle`"));
    // Starting the broken agent fails on its own error, once.
    let out = bb(&home, tmp.path())
        .args(["start", "--dry-run", "bad"])
        .assert()
        .code(1);
    let err = stderr_of(&out);
    let line = one_error_line(&err);
    assert!(line.contains(&bad) && line.contains("`botle`"), "{line}");
    assert!(!err.contains("warning: agent `bad`"), "{err}");
    // A broken bottle still fails the agents that use it.
    std::fs::write(home.join("bottles/dev.md"), "---\nsupervise: yes\n---\n").unwrap();
    let out = bb(&home, tmp.path())
        .args(["start", "--dry-run", "good"])
        .assert()
        .code(1);
    assert!(one_error_line(&stderr_of(&out)).contains("dev.md: `supervise`"));
}

#[test]
fn relative_home_is_made_absolute_and_its_error_does_not_say_set_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bb(Path::new("rel/nope"), tmp.path())
        .args(["list", "available"])
        .assert()
        .code(1);
    let line = one_error_line(&stderr_of(&out));
    let abs = tmp.path().join("rel/nope").display().to_string();
    assert!(line.contains(&abs), "{line}");
    assert!(line.contains("bot-bottle init"), "{line}");
    assert!(!line.contains("set BOT_BOTTLE_HOME"), "{line}");
    // A relative home that exists works, and paths shown are absolute.
    let (tmp, home) = home_with("", &[("a", "---\nbottle: dev\n---\n")]);
    assert!(home.starts_with(tmp.path()));
    bb(Path::new("home"), tmp.path())
        .args(["info", "a"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "({})",
            home.join("bottles/dev.md").display()
        )));
}

#[test]
fn empty_home_hints_at_init() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("home")).unwrap();
    let out = bb(&tmp.path().join("home"), tmp.path())
        .args(["list", "available"])
        .assert()
        .success()
        .stdout("");
    assert!(stderr_of(&out).contains("create one with `bot-bottle init`"));
}

#[test]
fn unset_credential_variables_name_the_bottle_file() {
    for yaml in [
        "agent_provider:\n  auth_token: NOPE_OAUTH\n",
        "egress:\n  routes:\n    - host: api.example.com\n      auth: {scheme: Bearer, token_ref: NOPE_PAT}\n",
    ] {
        let (tmp, home) = home_with(yaml, &[("a", "---\nbottle: dev\n---\n")]);
        let out = bb(&home, tmp.path())
            .args(["start", "--dry-run", "a"])
            .assert()
            .code(1);
        let line = one_error_line(&stderr_of(&out));
        let file = home.join("bottles/dev.md").display().to_string();
        assert!(line.contains(&file) && line.contains("NOPE_"), "{line}");
    }
}

#[test]
fn unclosed_bracket_is_reported_on_its_own_line() {
    // `[` on file line 12 (the `---` fence is line 1).
    let (tmp, home) = home_with("", &[]);
    std::fs::write(
        home.join("agents/a.md"),
        "---\nbottle: dev\ndescription: d\nmodel: m\ncolor: c\nmemory: m\nname: a\nskills: []\ngit-gate:\n  user:\n    name: n\nskills2: [a, b\nnext: 1\n---\n",
    )
    .unwrap();
    let out = bb(&home, tmp.path()).args(["info", "a"]).assert().code(1);
    let line = one_error_line(&stderr_of(&out));
    assert!(
        line.contains("a.md:12:10: `[` opened here is never closed"),
        "{line}"
    );
}

#[test]
fn resume_of_an_unknown_id_points_at_list_preserved() {
    let (tmp, home) = home_with("", &[("a", "---\nbottle: dev\n---\n")]);
    let out = bb(&home, tmp.path())
        .args(["resume", "a-zzz999"])
        .assert()
        .code(1);
    assert!(one_error_line(&stderr_of(&out)).contains("`bot-bottle list preserved`"));
    // A preserved bottle is listed with what `resume` needs.
    let state = home.join("state/a-abc123");
    std::fs::create_dir_all(&state).unwrap();
    let meta = serde_json::json!({
        "identity": "a-abc123", "agent": "a", "bottle": "dev",
        "cwd": tmp.path(), "copy_cwd": false, "started_at": "2026-01-01T00:00:00Z",
        "compose_project": "bot-bottle-a-abc123", "backend": "docker",
    });
    std::fs::write(state.join("metadata.json"), meta.to_string()).unwrap();
    // Not preserved yet: not listed.
    bb(&home, tmp.path())
        .args(["list", "preserved"])
        .assert()
        .success()
        .stdout("");
    std::fs::write(state.join(".preserve"), "").unwrap();
    bb(&home, tmp.path())
        .args(["list", "preserved"])
        .assert()
        .success()
        .stdout("a-abc123\ta\tdev\tdocker\t2026-01-01T00:00:00Z\n");
    let out = bb(&home, tmp.path())
        .args(["list", "preserved", "--json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v[0]["identity"], "a-abc123");
}

#[test]
fn init_refuses_unknown_bottles_and_ignored_flags() {
    let (tmp, home) = home_with("", &[]);
    // A typo in --bottle is refused, naming the available bottles and the flag to create it.
    let out = bb(&home, tmp.path())
        .args(["init", "helper", "--bottle", "dve"])
        .write_stdin("")
        .assert()
        .code(1);
    let line = one_error_line(&stderr_of(&out));
    assert!(
        line.contains("no bottle named `dve`")
            && line.contains("available: dev")
            && line.contains("--create-bottle"),
        "{line}"
    );
    assert!(!home.join("bottles/dve.md").exists() && !home.join("agents/helper.md").exists());
    // The same typo at the prompt is refused too.
    bb(&home, tmp.path())
        .args(["init", "helper"])
        .write_stdin("dve\nhello\n")
        .assert()
        .code(1);
    assert!(!home.join("bottles/dve.md").exists());
    // --provider with an existing bottle is an error, not silently dropped.
    let out = bb(&home, tmp.path())
        .args(["init", "helper", "--bottle", "dev", "--provider", "codex"])
        .write_stdin("")
        .assert()
        .code(1);
    assert!(one_error_line(&stderr_of(&out)).contains("`--provider codex` applies only"));
    // Asked for explicitly, a new bottle is created with the provider given.
    bb(&home, tmp.path())
        .args([
            "init",
            "helper",
            "--bottle",
            "work",
            "--create-bottle",
            "--provider",
            "codex",
        ])
        .write_stdin("Help.\n")
        .assert()
        .success();
    let bottle = std::fs::read_to_string(home.join("bottles/work.md")).unwrap();
    assert!(bottle.contains("template: codex"), "{bottle}");
    // An existing agent is refused before any question is asked.
    let out = bb(&home, tmp.path())
        .args(["init", "helper"])
        .write_stdin("dev\nnew prompt\n")
        .assert()
        .code(1);
    let err = stderr_of(&out);
    assert!(
        !err.contains("bottle (") && !err.contains("system prompt"),
        "{err}"
    );
    assert!(one_error_line(&err).contains("--force"));
    assert!(
        std::fs::read_to_string(home.join("agents/helper.md"))
            .unwrap()
            .contains("Help.")
    );
}

#[test]
fn init_without_a_terminal_prints_clean_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let out = bb(&home, tmp.path())
        .arg("init")
        .write_stdin("helper\n\nBe brief.\n")
        .assert()
        .success();
    let err = stderr_of(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.contains(&"agent name: "), "{err}");
    assert!(
        lines.contains(&"provider for the new bottle (claude, codex) [claude]: "),
        "{err}"
    );
    assert!(
        lines.contains(&"system prompt (one line, optional): "),
        "{err}"
    );
    // Every message starts its own line.
    for l in &lines {
        assert!(
            !l.contains(": bot-bottle:") && l.matches("bot-bottle:").count() <= 1,
            "run-together line {l:?} in\n{err}"
        );
    }
    assert!(
        lines.iter().any(|l| l.starts_with("bot-bottle: wrote")),
        "{err}"
    );
}

#[test]
fn info_and_the_preflight_show_the_same_routes() {
    let yaml = "agent_provider:\n  auth_token: OAUTH_VAR\nenv:\n  NOTE: \"?Type a note\"\n  HOSTY: \"${HOSTY_VAR}\"\negress:\n  routes:\n    - host: api.example.com\n      path_allowlist: [/v1/]\n      auth: {scheme: token, token_ref: PAT_VAR}\n    - host: pass.example.com\n      pipelock:\n        tls_passthrough: true\n        ssrf_ip_allowlist: [10.0.0.0/8]\n";
    let (tmp, home) = home_with(yaml, &[("a", "---\nbottle: dev\n---\n")]);
    let egress_lines = |text: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut inside = false;
        for l in text.lines() {
            let t = l.trim_start();
            // The key column: `egress` in `info`, `  egress` in the preflight.
            if l.starts_with("egress ") || l.starts_with("  egress ") {
                inside = true;
                out.push(t.trim_start_matches("egress").trim().to_string());
            } else if inside && l.starts_with("   ") && !t.contains("  ") {
                out.push(t.to_string());
            } else {
                inside = false;
            }
        }
        out
    };
    // Nothing exported: info still describes the bottle and says what is not set.
    let out = bb(&home, tmp.path()).args(["info", "a"]).assert().success();
    let info = stdout_of(&out);
    assert!(
        info.contains("api.example.com paths /v1/ [auth:token from PAT_VAR, NOT SET]"),
        "{info}"
    );
    assert!(
        info.contains("agent_provider.auth_token ← OAUTH_VAR (NOT SET)"),
        "{info}"
    );
    assert!(info.contains("env.HOSTY ← HOSTY_VAR (NOT SET)"), "{info}");
    // Exported: the preflight and info agree line for line, provider route first.
    let secrets = ["oauth-SECRET-1", "pat-SECRET-2", "host-SECRET-3"];
    let with_env = |cmd: &mut Command| {
        cmd.env("OAUTH_VAR", secrets[0])
            .env("PAT_VAR", secrets[1])
            .env("HOSTY_VAR", secrets[2]);
    };
    let mut c = bb(&home, tmp.path());
    with_env(&mut c);
    let info = stdout_of(&c.args(["info", "a"]).assert().success());
    let mut c = bb(&home, tmp.path());
    with_env(&mut c);
    let plan = stderr_of(&c.args(["start", "--dry-run", "a"]).assert().success());
    let routes = egress_lines(&info);
    assert_eq!(
        routes,
        [
            "api.anthropic.com [auth:Bearer from OAUTH_VAR, set]",
            "api.example.com paths /v1/ [auth:token from PAT_VAR, set]",
            "pass.example.com [tls passthrough: not inspected] [ssrf allow 10.0.0.0/8]",
        ],
        "{info}"
    );
    assert_eq!(routes, egress_lines(&plan), "{plan}");
    assert!(info.contains("PAT_VAR (set)") && plan.contains("PAT_VAR (set)"));
    for s in secrets {
        assert!(!info.contains(s) && !plan.contains(s), "{s} printed");
    }
    // The preflight names the workspace and the layer that applies `pipelock:` keys.
    assert!(
        plan.contains("workspace  empty (start with --cwd to copy"),
        "{plan}"
    );
    assert!(plan.contains("egress enforces the routes") && plan.contains("`pipelock:` keys"));
    assert!(!plan.contains("not bundled"), "{plan}");
    // `info --json`: structured fields, no notes inside strings.
    let mut c = bb(&home, tmp.path());
    let out = c.args(["info", "a", "--json"]).assert().success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let env: Vec<(&str, &str)> = v["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["from"].as_str().unwrap()))
        .filter(|(n, _)| !n.starts_with("CLAUDE") && !n.starts_with("DISABLE"))
        .collect();
    assert_eq!(env, [("HOSTY", "host"), ("NOTE", "prompt")]);
    let r = &v["egress_routes"][1];
    assert_eq!(r["host"], "api.example.com");
    assert_eq!(r["auth"]["scheme"], "token");
    assert_eq!(r["auth"]["token_ref"], "PAT_VAR");
    assert_eq!(r["auth"]["set"], false);
    assert_eq!(v["egress_routes"][2]["tls_passthrough"], true);
    assert_eq!(v["egress_routes"][2]["ssrf_ip_allowlist"][0], "10.0.0.0/8");
    let creds = v["credentials"].as_array().unwrap();
    assert!(
        creds
            .iter()
            .any(|c| c["source"] == "OAUTH_VAR" && c["set"] == false)
    );
    fn no_note_in_strings(v: &serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                assert!(!s.ends_with(')') || s.contains('/'), "note in a value: {s}")
            }
            serde_json::Value::Array(a) => a.iter().for_each(no_note_in_strings),
            serde_json::Value::Object(m) => m.values().for_each(no_note_in_strings),
            _ => {}
        }
    }
    no_note_in_strings(&v);
}

#[test]
fn help_and_dry_runs_are_honest_about_what_is_not_built() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bb(tmp.path(), tmp.path()).arg("--help").assert().success();
    let help = stdout_of(&out);
    let dashboard = help
        .lines()
        .find(|l| l.trim_start().starts_with("dashboard"))
        .unwrap();
    assert!(!dashboard.contains("not built yet"), "{dashboard}");
    assert!(dashboard.contains("pending requests"), "{dashboard}");
    assert!(
        !help.contains("__complete-agents"),
        "hidden command shown:\n{help}"
    );
    let out = bb(&repo().join("examples/home"), tmp.path())
        .args([
            "start",
            "--dry-run",
            "--backend",
            "smolmachines",
            "reviewer",
        ])
        .assert()
        .success();
    let err = stderr_of(&out);
    // Without `smolvm` on PATH the dry run still shows the plan and says what to install.
    assert!(err.contains("needs `smolvm`"), "{err}");
    assert!(!err.contains("not available yet"), "{err}");
    // The docker dry run has no such note.
    let out = bb(&repo().join("examples/home"), tmp.path())
        .args(["start", "--dry-run", "reviewer"])
        .assert()
        .success();
    assert!(!stderr_of(&out).contains("not available yet"));
}

#[test]
fn completion_scripts_offer_agent_names() {
    let tmp = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = bb(tmp.path(), tmp.path())
            .args(["completions", shell])
            .assert()
            .success();
        let script = stdout_of(&out);
        assert!(
            script.contains("bot-bottle __complete-agents"),
            "{shell} script does not ask for agents"
        );
    }
    let zsh = stdout_of(
        &bb(tmp.path(), tmp.path())
            .args(["completions", "zsh"])
            .assert(),
    );
    assert_eq!(
        zsh.matches(":_bot_bottle_agents'").count(),
        3,
        "start, info, edit"
    );
    bb(&repo().join("examples/home"), tmp.path())
        .arg("__complete-agents")
        .assert()
        .success()
        .stdout("coder\nresearcher\nreviewer\n")
        .stderr("");
    // Silent and successful without a home.
    bb(&tmp.path().join("none"), tmp.path())
        .arg("__complete-agents")
        .assert()
        .success()
        .stdout("")
        .stderr("");
}

#[test]
fn bash_completion_completes_agents_for_start() {
    let bin = assert_cmd::cargo::cargo_bin("bot-bottle");
    let dir = bin.parent().unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = r#"source <(bot-bottle completions bash)
COMP_WORDS=(bot-bottle start re); COMP_CWORD=2
_bot_bottle_with_agents bot-bottle re start
echo "${COMPREPLY[*]}""#;
    let out = std::process::Command::new("bash")
        .args(["-c", script])
        .env("PATH", path)
        .env("BOT_BOTTLE_HOME", repo().join("examples/home"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "researcher reviewer\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
