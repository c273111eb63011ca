//! The git-gate against a real `sshd` upstream and real `git` (loopback): clean pushes arrive,
//! secret-bearing pushes arrive nowhere, the ref policy holds, fetches fail closed, a wrong
//! host key is refused, and every decision is audited (SPEC F-SIDE git-gate, F-REFS;
//! THREATS G1–G7).

mod git_gate_common;

use git_gate_common::*;
use serde_json::json;

fn spec(up: &Upstream, name: &str, refs: serde_json::Value) -> RepoSpec {
    RepoSpec {
        name: name.into(),
        url: up.url(name),
        host_key: Some(up.host_pub.clone()),
        refs,
    }
}

/// sshd upstream with repo `proj`, a gate in front of it, an agent that clones it.
fn setup(
    test: &str,
    refs: serde_json::Value,
) -> Option<(Upstream, Gate, Agent, std::path::PathBuf)> {
    sshd_or_skip(test)?;
    let up = Upstream::start();
    let url = up.repo("proj");
    let gate = Gate::start(&up.user_key, &[spec(&up, "proj", refs)]);
    let agent = Agent::new(&gate, &[("proj", &url)]);
    let work = agent.clone(&url, "work");
    Some((up, gate, agent, work))
}

fn push(agent: &Agent, work: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = run(agent.git(work).arg("push").args(args));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn clean_push_arrives_upstream_and_is_audited() {
    let Some((up, gate, agent, work)) = setup("clean_push", json!({})) else {
        return;
    };
    let head = agent.commit(&work, "src/lib.rs", b"pub fn f() {}\n", "add lib");
    let (ok_push, err) = push(&agent, &work, &["origin", "main"]);
    assert!(ok_push, "{err}");
    assert_eq!(
        up.rev("proj", "refs/heads/main").as_deref(),
        Some(head.as_str())
    );
    // A new branch is fine by default.
    let b = agent.commit(&work, "b.txt", b"b\n", "on a branch");
    let (ok_branch, err) = push(&agent, &work, &["origin", "HEAD:refs/heads/feature/x"]);
    assert!(ok_branch, "{err}");
    assert_eq!(
        up.rev("proj", "refs/heads/feature/x").as_deref(),
        Some(b.as_str())
    );
    let audit = gate.audit();
    assert!(
        audit
            .iter()
            .any(|l| l["method"] == "FETCH" && l["verdict"] == "allow"),
        "{audit:?}"
    );
    assert!(
        audit.iter().any(|l| l["method"] == "PUSH"
            && l["verdict"] == "allow"
            && l["path"] == "/proj.git/refs/heads/main"),
        "{audit:?}"
    );
    // A second clone through the gate sees the pushed commits (the mirror follows).
    let again = agent.clone(&up.url("proj"), "again");
    assert_eq!(ok(agent.git(&again).args(["rev-parse", "HEAD"])), head);
}

/// What a scan refusal must name (and must not show).
struct Refused<'a> {
    rule: &'a str,
    commit: &'a str,
    place: &'a str,
    secret: &'a str,
}

/// Push `work`'s main and check it was refused by the scan, naming rule, commit and place,
/// never the secret, and that the upstream did not move.
fn assert_scan_refused(
    up: &Upstream,
    gate: &Gate,
    agent: &Agent,
    work: &std::path::Path,
    want: Refused<'_>,
) {
    let Refused {
        rule,
        commit,
        place,
        secret,
    } = want;
    let before = up.rev("proj", "refs/heads/main");
    let (pushed, err) = push(agent, work, &["origin", "main"]);
    assert!(!pushed, "push with a secret succeeded: {err}");
    assert!(err.contains("secret scan found"), "{err}");
    assert!(err.contains(rule), "rule {rule} not named: {err}");
    assert!(err.contains(commit), "commit {commit} not named: {err}");
    assert!(err.contains(place), "place {place} not named: {err}");
    assert!(!err.contains(secret), "the secret was echoed: {err}");
    assert_eq!(up.rev("proj", "refs/heads/main"), before, "upstream moved");
    let audit = gate.audit();
    let line = audit
        .iter()
        .find(|l| l["layer"] == "git-gate" && l["method"] == "PUSH")
        .unwrap_or_else(|| panic!("no scan audit line: {audit:?}"));
    assert_eq!(line["verdict"], "deny");
    assert_eq!(line["rule"], format!("secret-scan:{rule}"));
    let raw = std::fs::read_to_string(gate.dir.path().join("audit.log")).unwrap();
    assert!(!raw.contains(secret));
}

#[test]
fn secret_in_an_older_commit_of_the_range_is_refused() {
    let Some((up, gate, agent, work)) = setup("older_commit", json!({})) else {
        return;
    };
    let secret = aws_key();
    let bad = agent.commit(
        &work,
        "conf/app.env",
        format!("KEY={secret}\n").as_bytes(),
        "config",
    );
    agent.commit(&work, "conf/app.env", b"KEY=\n", "scrub");
    agent.commit(&work, "other.txt", b"clean\n", "tip is clean");
    assert_scan_refused(
        &up,
        &gate,
        &agent,
        &work,
        Refused {
            rule: "aws-access-key-id",
            commit: &bad,
            place: "conf/app.env",
            secret: &secret,
        },
    );
}

#[test]
fn secret_in_a_commit_message_is_refused() {
    let Some((up, gate, agent, work)) = setup("commit_message", json!({})) else {
        return;
    };
    let secret = github_pat();
    let bad = agent.commit(
        &work,
        "x.txt",
        b"x\n",
        &format!("use token {secret} for ci"),
    );
    assert_scan_refused(
        &up,
        &gate,
        &agent,
        &work,
        Refused {
            rule: "github-pat",
            commit: &bad,
            place: "commit message",
            secret: &secret,
        },
    );
}

#[test]
fn secret_in_a_file_added_then_deleted_is_refused() {
    let Some((up, gate, agent, work)) = setup("added_deleted", json!({})) else {
        return;
    };
    let secret = aws_key();
    let bad = agent.commit(&work, "leak.txt", secret.as_bytes(), "oops");
    std::fs::remove_file(work.join("leak.txt")).unwrap();
    ok(agent
        .git(&work)
        .args(["commit", "--quiet", "-am", "remove leak"]));
    assert_scan_refused(
        &up,
        &gate,
        &agent,
        &work,
        Refused {
            rule: "aws-access-key-id",
            commit: &bad,
            place: "leak.txt",
            secret: &secret,
        },
    );
}

#[test]
fn secret_in_a_gzipped_binary_or_behind_gitattributes_is_refused() {
    use std::io::Write as _;
    let Some((up, gate, agent, work)) = setup("gzip_blob", json!({})) else {
        return;
    };
    let secret = aws_key();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(format!("aws = {secret}\n").as_bytes())
        .unwrap();
    let blob = gz.finish().unwrap();
    // The pushed tree tries to mark everything binary and to switch the scan off.
    std::fs::write(work.join(".gitattributes"), "* -diff binary\n").unwrap();
    std::fs::write(work.join(".gitleaksignore"), "*\n").unwrap();
    let bad = agent.commit(&work, "data/blob.gz", &blob, "add data [skip scan]");
    assert_scan_refused(
        &up,
        &gate,
        &agent,
        &work,
        Refused {
            rule: "aws-access-key-id",
            commit: &bad,
            place: "data/blob.gz",
            secret: &secret,
        },
    );
}

#[test]
fn secret_in_a_new_file_name_is_refused() {
    let Some((up, gate, agent, work)) = setup("file_name", json!({})) else {
        return;
    };
    let secret = aws_key();
    let bad = agent.commit(&work, &format!("keys/{secret}.txt"), b"nothing\n", "add");
    assert_scan_refused(
        &up,
        &gate,
        &agent,
        &work,
        Refused {
            rule: "aws-access-key-id",
            commit: &bad,
            place: "a file name",
            secret: &secret,
        },
    );
}

#[test]
fn ref_policy_refuses_disallowed_refs_force_tags_and_deletes() {
    let Some((up, gate, agent, work)) = setup("ref_policy", json!({"allow": ["agent/*"]})) else {
        return;
    };
    agent.commit(&work, "a.txt", b"a\n", "a");
    let main_before = up.rev("proj", "refs/heads/main");

    let (pushed, err) = push(&agent, &work, &["origin", "main"]);
    assert!(
        !pushed && err.contains("not in this repo's allowed refs"),
        "{err}"
    );
    assert_eq!(up.rev("proj", "refs/heads/main"), main_before);

    let (pushed, err) = push(&agent, &work, &["origin", "HEAD:refs/heads/agent/one"]);
    assert!(pushed, "{err}");
    let first = up.rev("proj", "refs/heads/agent/one").expect("pushed");

    // Rewrite and force.
    ok(agent
        .git(&work)
        .args(["commit", "--quiet", "--amend", "-m", "rewritten"]));
    let (pushed, err) = push(
        &agent,
        &work,
        &["--force", "origin", "HEAD:refs/heads/agent/one"],
    );
    assert!(
        !pushed && err.contains("force-pushes are not allowed"),
        "{err}"
    );
    assert_eq!(
        up.rev("proj", "refs/heads/agent/one").as_deref(),
        Some(first.as_str())
    );

    ok(agent.git(&work).args(["tag", "v1"]));
    let (pushed, err) = push(&agent, &work, &["origin", "refs/tags/v1"]);
    assert!(
        !pushed && err.contains("tag pushes are not allowed"),
        "{err}"
    );
    assert_eq!(up.rev("proj", "refs/tags/v1"), None);

    let (pushed, err) = push(&agent, &work, &["origin", "--delete", "agent/one"]);
    assert!(!pushed, "{err}");
    assert_eq!(
        up.rev("proj", "refs/heads/agent/one").as_deref(),
        Some(first.as_str())
    );

    let rules: Vec<String> = gate
        .audit()
        .iter()
        .filter(|l| l["layer"] == "git-gate")
        .map(|l| l["rule"].as_str().unwrap_or("").to_string())
        .collect();
    for r in ["ref-not-allowed", "ref-force", "ref-tag"] {
        assert!(rules.iter().any(|x| x == r), "{r} not audited: {rules:?}");
    }
    // The same lines are the bottle's refusal events, as the host reads them.
    let raw = std::fs::read_to_string(gate.dir.path().join("audit.log")).unwrap();
    let events = bot_bottle::sidecar::supervise::refusals::from_audit_text("dev-1", &raw, 100);
    let force = events
        .iter()
        .find(|e| e.rule == "ref-force")
        .unwrap_or_else(|| panic!("no ref-force refusal event: {events:?}"));
    assert_eq!(
        (
            force.layer.as_str(),
            force.method.as_str(),
            force.bottle.as_str()
        ),
        ("git-gate", "PUSH", "dev-1")
    );
    assert!(force.path.starts_with("/proj.git/refs/"), "{force:?}");
    assert!(force.reason.contains("ref policy"), "{force:?}");
}

#[test]
fn default_policy_refuses_force_and_allowed_force_goes_through() {
    let Some((up, _gate, agent, work)) = setup("default_force", json!({})) else {
        return;
    };
    agent.commit(&work, "a.txt", b"a\n", "a");
    assert!(push(&agent, &work, &["origin", "main"]).0);
    let pushed_head = up.rev("proj", "refs/heads/main");
    ok(agent
        .git(&work)
        .args(["commit", "--quiet", "--amend", "-m", "again"]));
    let (pushed, err) = push(&agent, &work, &["--force", "origin", "main"]);
    assert!(
        !pushed && err.contains("force-pushes are not allowed"),
        "{err}"
    );
    assert_eq!(up.rev("proj", "refs/heads/main"), pushed_head);

    // The same rewrite with `force: true`.
    let Some((up2, _g2, agent2, work2)) =
        setup("allowed_force", json!({"force": true, "tags": true}))
    else {
        return;
    };
    agent2.commit(&work2, "a.txt", b"a\n", "a");
    assert!(push(&agent2, &work2, &["origin", "main"]).0);
    ok(agent2
        .git(&work2)
        .args(["commit", "--quiet", "--amend", "-m", "again"]));
    let amended = ok(agent2.git(&work2).args(["rev-parse", "HEAD"]));
    let (pushed, err) = push(&agent2, &work2, &["--force", "origin", "main"]);
    assert!(pushed, "{err}");
    assert_eq!(
        up2.rev("proj", "refs/heads/main").as_deref(),
        Some(amended.as_str())
    );
    ok(agent2
        .git(&work2)
        .args(["tag", "-a", "-m", "release", "v1"]));
    assert!(push(&agent2, &work2, &["origin", "refs/tags/v1"]).0);
    assert!(up2.rev("proj", "refs/tags/v1").is_some());
}

#[test]
fn fetch_with_the_upstream_down_fails_with_a_clear_message() {
    let Some((mut up, gate, agent, work)) = setup("upstream_down", json!({})) else {
        return;
    };
    up.stop();
    let out = run(agent.git(&work).args(["fetch", "origin"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "fetch succeeded from a stale mirror");
    assert!(
        err.contains("cannot sync `proj` from its upstream"),
        "{err}"
    );
    assert!(err.contains("stale"), "{err}");
    // A fresh clone fails the same way instead of serving the old mirror.
    let out = run(agent
        .git(agent.home.path())
        .args(["clone", &up.url("proj"), "c2"]));
    assert!(!out.status.success());
    // And a push does not pretend to succeed.
    agent.commit(&work, "x.txt", b"x\n", "x");
    assert!(!push(&agent, &work, &["origin", "main"]).0);
    assert!(
        gate.audit()
            .iter()
            .any(|l| l["rule"] == "upstream-unreachable" && l["verdict"] == "deny")
    );
    // Back up: works again.
    up.restart();
    assert!(
        run(agent.git(&work).args(["fetch", "origin"]))
            .status
            .success()
    );
}

/// The gate syncs every mirror in the background at start; when the upstream is down then,
/// the first push must still sync and fail closed, and succeed once the upstream is back.
#[test]
fn a_push_after_a_failed_start_sync_fails_closed_then_works() {
    let Some(_) = sshd_or_skip("failed_start_sync") else {
        return;
    };
    let mut up = Upstream::start();
    let url = up.repo("proj");
    up.stop();
    let gate = Gate::start(&up.user_key, &[spec(&up, "proj", json!({}))]);
    let agent = Agent::new(&gate, &[("proj", &url)]);
    let work = agent.home.path().join("work");
    ok(agent
        .git(agent.home.path())
        .args(["init", "--quiet", "-b", "side", "work"]));
    let new = agent.commit(&work, "a.txt", b"a\n", "a");
    ok(agent.git(&work).args(["remote", "add", "origin", &url]));
    let (pushed, err) = push(&agent, &work, &["origin", "side"]);
    assert!(!pushed, "push went through an unsynced mirror: {err}");
    assert!(
        err.contains("cannot sync `proj` from its upstream"),
        "{err}"
    );
    up.restart();
    assert_eq!(up.rev("proj", "refs/heads/side"), None);
    let (pushed, err) = push(&agent, &work, &["origin", "side"]);
    assert!(pushed, "{err}");
    assert_eq!(
        up.rev("proj", "refs/heads/side").as_deref(),
        Some(new.as_str())
    );
}

#[test]
fn a_wrong_host_key_is_refused() {
    let Some(_) = sshd_or_skip("wrong_host_key") else {
        return;
    };
    let up = Upstream::start();
    let url = up.repo("proj");
    let other = keygen(&up.dir.path().join("impostor"));
    let gate = Gate::start(
        &up.user_key,
        &[RepoSpec {
            name: "proj".into(),
            url: url.clone(),
            host_key: Some(other.trim().to_string()),
            refs: json!({}),
        }],
    );
    let agent = Agent::new(&gate, &[("proj", &url)]);
    let out = run(agent.git(agent.home.path()).args(["clone", &url, "w"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "clone through a wrong host key succeeded"
    );
    assert!(err.contains("Host key verification failed"), "{err}");
}

#[test]
fn undeclared_repos_and_traversal_are_refused() {
    let Some((up, gate, agent, _work)) = setup("undeclared", json!({})) else {
        return;
    };
    let other = up.repo("other");
    let out = run(agent.git(agent.home.path()).args([
        "clone",
        &format!("http://127.0.0.1:{}/other.git", gate.port),
        "o",
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not declared"), "{err}");
    // The agent's own ssh cannot reach the undeclared upstream directly either (no key).
    assert!(
        !run(agent.git(agent.home.path()).args(["clone", &other, "o2"]))
            .status
            .success()
    );
    for path in [
        "/../proj.git/info/refs",
        "/proj.git/../../etc/passwd",
        "/proj.git/HEAD",
    ] {
        let out = run(std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--path-as-is",
            ])
            .arg(format!("http://127.0.0.1:{}{path}", gate.port)));
        if out.status.code() == Some(127) {
            continue;
        }
        assert_eq!(String::from_utf8_lossy(&out.stdout), "404", "{path}");
    }
}

#[test]
fn secret_split_by_a_line_continuation_or_glued_into_a_word_is_refused() {
    let Some((up, gate, agent, work)) = setup("continuation", json!({})) else {
        return;
    };
    let secret = github_pat();
    let (a, b) = secret.split_at(15);
    let bad = agent.commit(
        &work,
        "deploy.sh",
        format!("TOKEN=x{a}\\\n{b}yz\n").as_bytes(),
        "deploy script",
    );
    assert_scan_refused(
        &up,
        &gate,
        &agent,
        &work,
        Refused {
            rule: "github-pat",
            commit: &bad,
            place: "deploy.sh",
            secret: b,
        },
    );
}

/// A stand-in `gitleaks` in `dir`: answers `version`, records its argv, and exits `code`
/// after writing `report` where `--report-path` says.
fn fake_gitleaks(dir: &std::path::Path, code: i32, report: &str) {
    use std::os::unix::fs::PermissionsExt;
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = version ]; then echo 8.99.0-fake; exit 0; fi\n\
         printf '%s\\n' \"$@\" > {log}\n\
         while [ $# -gt 0 ]; do if [ \"$1\" = --report-path ]; then printf '%s' '{report}' > \"$2\"; fi; shift; done\n\
         exit {code}\n",
        log = dir.join("argv").display(),
    );
    let p = dir.join("gitleaks");
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn gated_by_fake_gitleaks(
    test: &str,
    code: i32,
    report: &str,
) -> Option<(Upstream, Gate, Agent, std::path::PathBuf, tempfile::TempDir)> {
    sshd_or_skip(test)?;
    let fake = tempfile::tempdir().unwrap();
    fake_gitleaks(fake.path(), code, report);
    let up = Upstream::start();
    let url = up.repo("proj");
    let gate = Gate::start_with_path(
        &up.user_key,
        &[spec(&up, "proj", json!({}))],
        Some(fake.path()),
    );
    let agent = Agent::new(&gate, &[("proj", &url)]);
    let work = agent.clone(&url, "work");
    Some((up, gate, agent, work, fake))
}

#[test]
fn gitleaks_on_path_is_a_second_opinion_that_can_refuse_a_push() {
    let report = r#"[{"RuleID":"custom-rule","Commit":"c0ffee","File":"notes.txt","Secret":"REDACTED","Match":"REDACTED"}]"#;
    let Some((up, gate, agent, work, fake)) = gated_by_fake_gitleaks("gitleaks_refuses", 1, report)
    else {
        return;
    };
    let before = up.rev("proj", "refs/heads/main");
    // Clean for the built-in scanner; only the second opinion objects.
    let head = agent.commit(&work, "notes.txt", b"nothing secret here\n", "notes");
    let (pushed, err) = push(&agent, &work, &["origin", "main"]);
    assert!(!pushed, "the push went through: {err}");
    assert!(
        err.contains("gitleaks rule custom-rule in commit c0ffee, notes.txt"),
        "{err}"
    );
    assert_eq!(up.rev("proj", "refs/heads/main"), before);
    // It ran redacted, over the pushed range, with the gate's report file.
    let argv = std::fs::read_to_string(fake.path().join("argv")).unwrap();
    let argv: Vec<&str> = argv.lines().collect();
    assert_eq!(argv[0], "git");
    assert!(argv.contains(&"--redact"), "{argv:?}");
    assert!(
        argv.contains(&format!("--log-opts={head} --not --all").as_str()),
        "{argv:?}"
    );
    assert!(
        gate.audit()
            .iter()
            .any(|l| l["layer"] == "git-gate" && l["rule"] == "gitleaks" && l["verdict"] == "deny"),
        "{:?}",
        gate.audit()
    );
}

#[test]
fn a_clean_gitleaks_verdict_lets_the_push_through() {
    let Some((up, _gate, agent, work, fake)) = gated_by_fake_gitleaks("gitleaks_clean", 0, "[]")
    else {
        return;
    };
    let head = agent.commit(&work, "a.txt", b"a\n", "a");
    let (pushed, err) = push(&agent, &work, &["origin", "main"]);
    assert!(pushed, "{err}");
    assert_eq!(
        up.rev("proj", "refs/heads/main").as_deref(),
        Some(head.as_str())
    );
    assert!(fake.path().join("argv").exists(), "gitleaks never ran");
}

#[test]
fn a_failing_gitleaks_refuses_the_push() {
    let Some((up, _gate, agent, work, _fake)) = gated_by_fake_gitleaks("gitleaks_broken", 2, "")
    else {
        return;
    };
    let before = up.rev("proj", "refs/heads/main");
    agent.commit(&work, "a.txt", b"a\n", "a");
    let (pushed, err) = push(&agent, &work, &["origin", "main"]);
    assert!(!pushed, "{err}");
    assert!(err.contains("gitleaks"), "{err}");
    assert_eq!(up.rev("proj", "refs/heads/main"), before);
}

#[test]
fn an_allowed_force_push_never_overwrites_upstream_commits_the_agent_did_not_see() {
    let Some((up, _gate, agent, work)) = setup("force_lease", json!({"force": true})) else {
        return;
    };
    agent.commit(&work, "a.txt", b"a\n", "a");
    assert!(push(&agent, &work, &["origin", "main"]).0);
    // Someone else pushes straight to the upstream; the gate's mirror does not know yet.
    let other = up.dir.path().join("other");
    ok(plain_git(up.dir.path())
        .env("GIT_SSH_COMMAND", up.direct_ssh())
        .args(["clone", "--quiet", &up.url("proj")])
        .arg(&other));
    std::fs::write(other.join("theirs.txt"), "theirs\n").unwrap();
    ok(plain_git(&other).args(["add", "."]));
    ok(plain_git(&other).args(["commit", "--quiet", "-m", "theirs"]));
    ok(plain_git(&other)
        .env("GIT_SSH_COMMAND", up.direct_ssh())
        .args(["push", "--quiet", "origin", "main"]));
    let theirs = up.rev("proj", "refs/heads/main");
    // The agent rewrites its own commit and force-pushes without fetching: allowed by the
    // policy, but only over what it replaced, so the upstream refuses and keeps theirs.
    ok(agent
        .git(&work)
        .args(["commit", "--quiet", "--amend", "-m", "a, reworded"]));
    let (pushed, err) = push(&agent, &work, &["--force", "origin", "main"]);
    assert!(!pushed, "the force-push overwrote unseen commits: {err}");
    assert_eq!(up.rev("proj", "refs/heads/main"), theirs);
    // After a fetch (which syncs the mirror) the agent sees theirs and can decide.
    ok(agent.git(&work).args(["fetch", "--quiet", "origin"]));
    let (pushed, err) = push(&agent, &work, &["--force", "origin", "main"]);
    assert!(pushed, "{err}");
    assert_eq!(
        up.rev("proj", "refs/heads/main"),
        Some(ok(agent.git(&work).args(["rev-parse", "HEAD"])))
    );
}
