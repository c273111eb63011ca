//! CLI tests for the commands that need no engine: they run the real binary against the
//! `examples/home` tree or a temporary home.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn examples_home() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/home")
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

fn one_error_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr).to_string();
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("bot-bottle: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "expected one error line in:\n{text}");
    errors[0].to_string()
}

#[test]
fn version_and_help_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    bb(tmp.path(), tmp.path())
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::contains(env!("CARGO_PKG_VERSION")));
    for sub in [
        "start",
        "resume",
        "list",
        "cleanup",
        "info",
        "init",
        "edit",
        "exec",
        "dashboard",
        "completions",
    ] {
        bb(tmp.path(), tmp.path())
            .args([sub, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Usage"));
    }
}

#[test]
fn bad_arguments_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    bb(tmp.path(), tmp.path())
        .args(["start", "--no-such-flag", "x"])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with("bot-bottle: error:"));
    bb(tmp.path(), tmp.path()).assert().code(1);
    bb(tmp.path(), tmp.path())
        .args(["start", "a", "--backend", "vmware"])
        .assert()
        .code(1);
}

#[test]
fn dashboard_without_a_terminal_is_one_error_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bb(tmp.path(), tmp.path()).arg("dashboard").assert().code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(line.contains("the dashboard needs a terminal"), "{line}");
    assert!(!line.contains("not available yet"), "{line}");
}

#[test]
fn resume_of_an_unknown_identity_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bb(tmp.path(), tmp.path())
        .args(["resume", "x-abc123"])
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(line.contains("x-abc123"), "{line}");
}

#[test]
fn list_available_prints_one_name_per_line() {
    let home = examples_home();
    let tmp = tempfile::tempdir().unwrap();
    bb(&home, tmp.path())
        .args(["list", "available"])
        .assert()
        .success()
        .stdout("coder\nresearcher\nreviewer\n");
}

#[test]
fn list_available_json() {
    let home = examples_home();
    let tmp = tempfile::tempdir().unwrap();
    let out = bb(&home, tmp.path())
        .args(["list", "available", "--json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["coder", "researcher", "reviewer"]);
    assert_eq!(v[2]["bottle"], "claude-dev");
}

#[test]
fn cwd_agents_are_listed_and_cwd_bottles_ignored_with_a_warning() {
    let home = examples_home();
    let tmp = tempfile::tempdir().unwrap();
    let dot = tmp.path().join(".bot-bottle");
    std::fs::create_dir_all(dot.join("agents")).unwrap();
    std::fs::create_dir_all(dot.join("bottles")).unwrap();
    std::fs::write(
        dot.join("agents/local.md"),
        "---\nbottle: claude-dev\n---\nLocal agent.\n",
    )
    .unwrap();
    std::fs::write(dot.join("bottles/evil.md"), "---\nsupervise: true\n---\n").unwrap();
    bb(&home, tmp.path())
        .args(["list", "available"])
        .assert()
        .success()
        .stdout(predicate::str::contains("local\n"))
        .stderr(predicate::str::contains("warning"));
}

#[test]
fn missing_home_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bb(&tmp.path().join("nope"), tmp.path())
        .args(["list", "available"])
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(line.contains("nope"), "{line}");
}

#[test]
fn info_describes_the_agent_without_values() {
    let home = examples_home();
    let tmp = tempfile::tempdir().unwrap();
    bb(&home, tmp.path())
        .args(["info", "reviewer"])
        .assert()
        .success()
        .stdout(predicate::str::contains("claude-dev"))
        .stdout(predicate::str::contains("REVIEW_NOTE (prompt)"))
        .stdout(predicate::str::contains("docs.rs"));
    let out = bb(&home, tmp.path())
        .args(["info", "coder", "--json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["provider"], "codex");
    // Every bottle is limited by default (F-LIMITS), and `info` says how.
    assert_eq!(v["limits"]["agent"]["memory_bytes"], 4u64 << 30);
    assert_eq!(v["limits"]["agent"]["pids"], 2048);
    assert_eq!(v["limits"]["bundle"]["pids"], 1024);
    assert_eq!(v["limits"]["agent"]["from_bottle"]["memory"], false);
    bb(&home, tmp.path())
        .args(["info", "reviewer"])
        .assert()
        .success()
        .stdout(predicate::str::contains("limits    agent    cpus "))
        .stdout(predicate::str::contains(
            "bundle   cpus 1, memory 1g, pids 1024",
        ));
    bb(&home, tmp.path())
        .args(["info", "ghost"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("reviewer"));
}

#[test]
fn dry_run_accepts_every_example_agent_and_creates_nothing() {
    let src = examples_home();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    copy_dir(&src, &home);
    let before = tree(&home);
    for agent in ["reviewer", "researcher", "coder"] {
        bb(&home, tmp.path())
            .args(["start", "--dry-run", agent])
            .assert()
            .success()
            .stderr(predicate::str::contains(format!("bot-bottle-{agent}-")));
    }
    bb(&home, tmp.path())
        .env("BOT_BOTTLE_DRY_RUN", "1")
        .args(["start", "reviewer"])
        .assert()
        .success();
    assert_eq!(before, tree(&home), "a dry run must not create anything");
}

#[test]
fn dry_run_shows_prompted_names_and_never_values() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join("bottles")).unwrap();
    std::fs::create_dir_all(home.join("agents")).unwrap();
    std::fs::write(
        home.join("bottles/b.md"),
        "---\nenv:\n  API_KEY: \"${HOST_API_KEY}\"\n  ASKED: \"?Type it\"\nagent_provider:\n  auth_token: HOST_OAUTH\negress:\n  routes:\n    - host: api.example.com\n      auth:\n        scheme: Bearer\n        token_ref: HOST_TOKEN\n---\n",
    )
    .unwrap();
    std::fs::write(home.join("agents/a.md"), "---\nbottle: b\n---\nhi\n").unwrap();
    let secrets = [
        "hostsecret-AAAA-1111",
        "oauthsecret-BBBB-2222",
        "tokensecret-CCCC-3333",
    ];
    let out = bb(&home, tmp.path())
        .env("HOST_API_KEY", secrets[0])
        .env("HOST_OAUTH", secrets[1])
        .env("HOST_TOKEN", secrets[2])
        .args(["start", "--dry-run", "a"])
        .write_stdin("should-not-be-read\n")
        .assert()
        .success();
    let all = [
        out.get_output().stdout.clone(),
        out.get_output().stderr.clone(),
    ]
    .concat();
    let text = String::from_utf8_lossy(&all);
    assert!(text.contains("ASKED (prompt)"), "{text}");
    assert!(text.contains("API_KEY"), "{text}");
    for s in secrets {
        assert!(!text.contains(s), "secret {s} printed:\n{text}");
    }
    assert!(!home.join("state").exists());
}

#[test]
fn broken_manifest_gives_one_error_line_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join("bottles")).unwrap();
    std::fs::create_dir_all(home.join("agents")).unwrap();
    std::fs::write(home.join("bottles/b.md"), "---\nsupervise: yes\n---\n").unwrap();
    std::fs::write(home.join("agents/a.md"), "---\nbottle: b\n---\n").unwrap();
    let out = bb(&home, tmp.path())
        .args(["start", "--dry-run", "a"])
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(line.contains("b.md"), "{line}");
    assert!(line.contains("supervise"), "{line}");
}

#[test]
fn init_creates_agent_and_starter_bottle_and_refuses_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    bb(&home, tmp.path())
        .args(["init", "helper", "--provider", "claude"])
        .write_stdin("Be helpful.\n")
        .assert()
        .success();
    assert!(home.join("agents/helper.md").is_file());
    assert!(home.join("bottles/default.md").is_file());
    bb(&home, tmp.path())
        .args(["start", "--dry-run", "helper"])
        .assert()
        .success();
    // Existing file: a "no" (or no answer) leaves it unchanged.
    let before = std::fs::read_to_string(home.join("agents/helper.md")).unwrap();
    bb(&home, tmp.path())
        .args(["init", "helper", "--bottle", "default"])
        .write_stdin("n\n")
        .assert()
        .code(1);
    assert_eq!(
        before,
        std::fs::read_to_string(home.join("agents/helper.md")).unwrap()
    );
    bb(&home, tmp.path())
        .args(["init", "Bad_Name"])
        .assert()
        .code(1);
}

#[test]
fn edit_revalidates_after_save() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    copy_dir(&examples_home(), &home);
    // An "editor" that leaves the file alone: valid.
    bb(&home, tmp.path())
        .env("EDITOR", "true")
        .args(["edit", "coder"])
        .assert()
        .success();
    // An "editor" that breaks the file: the load error is shown, exit 1.
    let script = tmp.path().join("break.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nprintf -- '---\\nbottle: nope\\n---\\n' > \"$1\"\n",
    )
    .unwrap();
    make_executable(&script);
    let out = bb(&home, tmp.path())
        .env("EDITOR", &script)
        .args(["edit", "coder"])
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(line.contains("coder.md"), "{line}");
    // An editor that is not installed, or that fails: one line saying what to do, exit 1.
    for (editor, says) in [
        ("/nonexistent/editor", "set `EDITOR`"),
        ("false", "may be unsaved"),
    ] {
        let out = bb(&home, tmp.path())
            .env("EDITOR", editor)
            .args(["edit", "coder"])
            .assert()
            .code(1);
        let line = one_error_line(&out.get_output().stderr);
        assert!(line.contains(says), "{editor}: {line}");
    }
}

#[test]
fn completions_are_generated() {
    let tmp = tempfile::tempdir().unwrap();
    bb(tmp.path(), tmp.path())
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(predicate::str::contains("bot-bottle"));
}

fn make_executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}
