//! Git-gate benchmark, everything measured side by side in one run (nothing asserted):
//! - a push of 200 commits (~5 MB of diff) through the gate vs straight to the same sshd;
//! - a clone through the gate vs straight from the sshd;
//! - scanner throughput (MB/s, one core) over the pushed diff text, and recall on the
//!   labelled corpus (every rule, each under every evasion of `scan::fixtures::evasions`);
//!   with `detect-secrets` on PATH, its throughput and recall on the same files.
//!
//! Run with `benches/git-gate.sh` (release build; needs `/usr/sbin/sshd`).

#[path = "../tests/git_gate_common/mod.rs"]
mod common;
#[path = "../src/scan/fixtures.rs"]
mod fixtures;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use bot_bottle::scan::{Scanner, rules};
use common::*;

const COMMITS: usize = 200;
const BYTES_PER_COMMIT: usize = 25_000;
const ROUNDS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn secs(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

/// Source-like text without secrets: identifiers, numbers, prose.
fn filler(seed: u64, n: usize) -> String {
    let words = fixtures::rnd(fixtures::LOWER, n / 2, seed);
    let mut out = String::with_capacity(n + n / 40);
    for (i, chunk) in words.as_bytes().chunks(7).enumerate() {
        out.push_str(&format!(
            "let {} = {};\n",
            String::from_utf8_lossy(chunk),
            i * 31 + seed as usize
        ));
        if out.len() >= n {
            break;
        }
    }
    out
}

fn main() {
    if sshd_or_skip("git_gate_bench").is_none() {
        return;
    }
    let up = Upstream::start();
    let mut specs = Vec::new();
    let mut urls = Vec::new();
    for r in 0..ROUNDS {
        for kind in ["direct", "gated"] {
            let name = format!("{kind}{r}");
            urls.push((name.clone(), up.repo(&name)));
            specs.push(RepoSpec {
                name: name.clone(),
                url: up.url(&name),
                host_key: Some(up.host_pub.clone()),
                refs: serde_json::json!({}),
            });
        }
    }
    let gate = Gate::start(&up.user_key, &specs);
    let pairs: Vec<(&str, &str)> = urls.iter().map(|(n, u)| (n.as_str(), u.as_str())).collect();
    let agent = Agent::new(&gate, &pairs);

    // One local history of 200 commits, pushed to fresh upstream repos each round.
    let work = agent.clone(&up.url("direct0"), "work");
    let mut diff_text = String::new();
    for i in 0..COMMITS {
        let text = filler(i as u64 + 100, BYTES_PER_COMMIT);
        std::fs::write(work.join(format!("src/m{i}.rs")), &text)
            .or_else(|_| {
                std::fs::create_dir_all(work.join("src"))?;
                std::fs::write(work.join(format!("src/m{i}.rs")), &text)
            })
            .expect("write");
        ok(agent.git(&work).args(["add", "-A"]));
        ok(agent
            .git(&work)
            .args(["commit", "--quiet", "-m", &format!("change {i}")]));
        diff_text.push_str(&text);
    }
    let mb = diff_text.len() as f64 / 1e6;
    let mut direct = Vec::new();
    let mut gated = Vec::new();
    for r in 0..ROUNDS {
        let d = up.url(&format!("direct{r}"));
        direct.push(secs(|| {
            ok(plain_git(&work)
                .env("GIT_SSH_COMMAND", up.direct_ssh())
                .args(["push", "--quiet", &d, "HEAD:refs/heads/bench"]));
        }));
        let g = up.url(&format!("gated{r}"));
        gated.push(secs(|| {
            ok(agent
                .git(&work)
                .args(["push", "--quiet", &g, "HEAD:refs/heads/bench"]));
        }));
    }
    let (pd, pg) = (median(direct), median(gated));
    println!(
        "push {COMMITS} commits ({mb:.1} MB diff), first contact: direct {pd:.3}s, gate {pg:.3}s, ratio {:.2}x (goal <= 1.5x)",
        pg / pd
    );
    // The usual order in a bottle: the agent fetched (or cloned) through the gate before it
    // pushes, so the mirror is already synced. Same history, to another branch each round.
    let mut direct = Vec::new();
    let mut gated = Vec::new();
    for r in 0..ROUNDS {
        ok(plain_git(&work).args([
            "commit",
            "--quiet",
            "--allow-empty",
            "-m",
            &format!("round {r}"),
        ]));
        let d = up.url(&format!("direct{r}"));
        direct.push(secs(|| {
            ok(plain_git(&work)
                .env("GIT_SSH_COMMAND", up.direct_ssh())
                .args(["push", "--quiet", &d, &format!("HEAD:refs/heads/again{r}")]));
        }));
        let g = up.url(&format!("gated{r}"));
        ok(agent.git(&work).args(["ls-remote", "--quiet", &g]));
        gated.push(secs(|| {
            ok(agent.git(&work).args([
                "push",
                "--quiet",
                &g,
                &format!("HEAD:refs/heads/again{r}"),
            ]));
        }));
    }
    let (pd2, pg2) = (median(direct), median(gated));
    println!(
        "push of 1 commit after a fetch (mirror synced): direct {pd2:.3}s, gate {pg2:.3}s, ratio {:.2}x",
        pg2 / pd2
    );

    let mut direct = Vec::new();
    let mut gated = Vec::new();
    for r in 0..ROUNDS {
        let d = up.url(&format!("direct{r}"));
        let into = agent.home.path().join(format!("cd{r}"));
        direct.push(secs(|| {
            ok(plain_git(agent.home.path())
                .env("GIT_SSH_COMMAND", up.direct_ssh())
                .args(["clone", "--quiet", &d])
                .arg(&into));
        }));
        let g = up.url(&format!("gated{r}"));
        gated.push(secs(|| {
            ok(agent
                .git(agent.home.path())
                .args(["clone", "--quiet", &g, &format!("cg{r}")]));
        }));
    }
    let (cd, cg) = (median(direct), median(gated));
    println!(
        "clone ({mb:.1} MB): direct {cd:.3}s, gate {cg:.3}s, ratio {:.2}x (goal <= 1.3x)",
        cg / cd
    );

    // Scanner throughput on the pushed text, one core.
    let scanner = Scanner::new();
    let data = diff_text.as_bytes();
    let t = median(
        (0..ROUNDS)
            .map(|_| secs(|| assert!(scanner.scan(data).is_none())))
            .collect(),
    );
    let ours = mb / t;
    println!("scanner: {ours:.1} MB/s on {mb:.1} MB of source text (one core)");

    // Labelled corpus: every rule under every evasion, one file each.
    let corpus = tempfile::tempdir().expect("tempdir");
    let mut total = 0;
    let mut found = 0;
    for info in rules() {
        for (how, bytes) in fixtures::evasions(&fixtures::positive(info.id)) {
            total += 1;
            if scanner.scan(&bytes).is_some() {
                found += 1;
            }
            std::fs::write(corpus.path().join(format!("{}.{how}.txt", info.id)), &bytes).unwrap();
        }
    }
    println!(
        "scanner recall: {found}/{total} labelled samples ({:.1}%)",
        100.0 * found as f64 / total as f64
    );
    detect_secrets(corpus.path(), data, total, ours);
}

/// `detect-secrets scan` over the same text and corpus, when installed.
fn detect_secrets(corpus: &Path, data: &[u8], total: usize, ours: f64) {
    if which::which("detect-secrets").is_err() {
        println!("detect-secrets: not installed (pip install detect-secrets); no comparison");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("text.rs"), data).unwrap();
    let mb = data.len() as f64 / 1e6;
    let t = secs(|| {
        ok(Command::new("detect-secrets")
            .current_dir(dir.path())
            .args(["scan", "--all-files", "text.rs"]));
    });
    let theirs = mb / t;
    println!(
        "detect-secrets: {theirs:.2} MB/s on the same text; scanner is {:.0}x faster (goal >= 50x)",
        ours / theirs
    );
    let out =
        ok(Command::new("detect-secrets")
            .current_dir(corpus)
            .args(["scan", "--all-files", "."]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let hit = v["results"].as_object().map_or(0, |m| m.len());
    println!(
        "detect-secrets recall: {hit}/{total} labelled samples ({:.1}%)",
        100.0 * hit as f64 / total as f64
    );
}
