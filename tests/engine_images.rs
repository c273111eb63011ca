//! Engine tests (real Docker, `BOT_BOTTLE_ENGINE_TESTS=1`): the repo's Dockerfiles build
//! through `images`, the provider CLI runs in the agent image, a second `ensure_image` is a
//! cache hit, and the relay gives a `--network none` container its only way to the bundle.
//!
//! Without the variable every test reports itself as skipped on the real stderr.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bot_bottle::images::{
    self, ImageSpec, ImageStatus, Provider, ensure_image, find_sidecar_bin_dir, host_extra_cas,
};
use bot_bottle::runner::{Output, ProcessSpec, RealRunner, Runner};

/// Writes past the test harness's output capture, so skips and figures are always visible.
fn loud(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

fn enabled(test: &str) -> bool {
    if std::env::var("BOT_BOTTLE_ENGINE_TESTS").as_deref() == Ok("1") {
        return true;
    }
    loud(&format!(
        "skipped: engine_images::{test} needs a Docker engine; set BOT_BOTTLE_ENGINE_TESTS=1 (.ci/run does when `docker info` answers)"
    ));
    false
}

fn docker<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    RealRunner
        .run(&ProcessSpec::new("docker").args(args))
        .expect("docker runs")
}

fn specs() -> (ImageSpec, ImageSpec) {
    let cas = host_extra_cas().expect("extra CAs readable");
    let bin = find_sidecar_bin_dir().expect("sidecar binaries next to the test binary");
    (
        ImageSpec::sidecars(&bin, &cas, None),
        ImageSpec::agent(Provider::Claude, &cas, None),
    )
}

struct Built {
    sidecars: (ImageStatus, Duration),
    claude: (ImageStatus, Duration),
}

/// Builds both images once per test process (tests run in parallel threads).
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let (sidecars, claude) = specs();
        let t = Instant::now();
        let s = ensure_image(&RealRunner, &sidecars).expect("sidecar image builds");
        let sd = t.elapsed();
        let t = Instant::now();
        let c = ensure_image(&RealRunner, &claude).expect("claude image builds");
        let cd = t.elapsed();
        loud(&format!(
            "engine_images: first ensure_image: sidecars {s} in {sd:.2?}, claude {c} in {cd:.2?}"
        ));
        Built {
            sidecars: (s, sd),
            claude: (c, cd),
        }
    })
}

/// Serialises tests that start containers (2-core machines; clearer failures).
fn engine_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes the named containers, volumes and networks on drop, whatever happened.
struct Cleanup {
    containers: Vec<String>,
    volumes: Vec<String>,
    networks: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            docker(["rm", "-f", "-v", c]);
        }
        for v in &self.volumes {
            docker(["volume", "rm", "-f", v]);
        }
        for n in &self.networks {
            docker(["network", "rm", n]);
        }
    }
}

#[test]
fn claude_image_runs_the_provider_cli() {
    if !enabled("claude_image_runs_the_provider_cli") {
        return;
    }
    built();
    let _g = engine_lock();
    let out = docker([
        "run",
        "--rm",
        "--network",
        "none",
        images::CLAUDE_TAG,
        "claude",
        "--version",
    ]);
    assert!(
        out.success(),
        "claude --version failed: {}",
        out.stderr_str()
    );
    let version = images::CLAUDE_DOCKERFILE
        .lines()
        .find_map(|l| l.strip_prefix("ARG CLAUDE_CODE_VERSION="))
        .expect("pinned version in Dockerfile.claude");
    assert!(
        out.stdout_str().contains(version),
        "expected {version}, got {}",
        out.stdout_str()
    );
    // the image runs as `node` and trusts the host's extra CAs
    let out = docker([
        "run",
        "--rm",
        "--network",
        "none",
        images::CLAUDE_TAG,
        "sh",
        "-c",
        "id -un; ls /usr/local/share/ca-certificates | grep -c bot-bottle-extra || true",
    ]);
    let text = out.stdout_str();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("node"));
    let n_cas: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    assert_eq!(n_cas, host_extra_cas().unwrap().len(), "{text}");
}

#[test]
fn second_ensure_is_a_cache_hit() {
    if !enabled("second_ensure_is_a_cache_hit") {
        return;
    }
    let b = built();
    let _g = engine_lock();
    let (sidecars, claude) = specs();
    for (name, spec) in [("sidecars", &sidecars), ("claude", &claude)] {
        let t = Instant::now();
        let status = ensure_image(&RealRunner, spec).unwrap();
        loud(&format!(
            "engine_images: warm ensure_image {name}: {status} in {:.2?}",
            t.elapsed()
        ));
        assert_eq!(status, ImageStatus::Cached, "{name}");
    }
    // A label mismatch with every layer in Docker's cache: what an upgrade of the CLI costs.
    let relabel = ImageSpec {
        tag: "bot-bottle-test-relabel:latest".to_string(),
        ..claude.clone()
    }
    .with_build_arg("BOT_BOTTLE_TEST_NONCE", format!("{}", std::process::id()));
    let t = Instant::now();
    let status = ensure_image(&RealRunner, &relabel).unwrap();
    loud(&format!(
        "engine_images: rebuild with layer cache (label mismatch): {status} in {:.2?}",
        t.elapsed()
    ));
    assert_eq!(status, ImageStatus::Built);
    docker(["rmi", "-f", "bot-bottle-test-relabel:latest"]);
    loud(&format!(
        "engine_images: cold figures this run: sidecars {} {:.2?}, claude {} {:.2?}",
        b.sidecars.0, b.sidecars.1, b.claude.0, b.claude.1
    ));
}

#[test]
fn relay_is_the_only_way_out_of_a_network_less_container() {
    if !enabled("relay_is_the_only_way_out_of_a_network_less_container") {
        return;
    }
    built();
    let _g = engine_lock();
    let p = format!("bot-bottle-test-{}", std::process::id());
    let (net, sock, tools) = (
        format!("{p}-net"),
        format!("{p}-sock"),
        format!("{p}-tools"),
    );
    let (up, bundle) = (format!("{p}-up"), format!("{p}-bundle"));
    let _cleanup = Cleanup {
        containers: vec![up.clone(), bundle.clone()],
        volumes: vec![sock.clone(), tools.clone()],
        networks: vec![net.clone()],
    };
    assert!(docker(["network", "create", &net]).success());
    for v in [&sock, &tools] {
        assert!(docker(["volume", "create", v]).success());
    }

    // An upstream HTTP server on the bundle's network.
    let server =
        "require('http').createServer((q,s)=>s.end('hello from upstream '+q.url)).listen(8080)";
    let out = docker([
        "run",
        "-d",
        "--name",
        &up,
        "--network",
        &net,
        "--network-alias",
        "upstream",
        images::CLAUDE_TAG,
        "node",
        "-e",
        server,
    ]);
    assert!(out.success(), "{}", out.stderr_str());

    // The bundle: bot-bottle-init (the image's entrypoint) running the relay in reverse mode,
    // its argv read from `relay.args`; the tools volume gets filled from the image.
    let cfg = tempfile::tempdir().unwrap();
    std::fs::write(
        cfg.path().join("relay.args"),
        r#"["bot-bottle-relay","--unix-to-tcp","/run/bot-bottle/egress.sock=upstream:8080"]"#,
    )
    .unwrap();
    let cfg_mount = format!("{}:/etc/bot-bottle/sidecar:ro", cfg.path().display());
    let out = docker([
        "run",
        "-d",
        "--name",
        &bundle,
        "--network",
        &net,
        "-e",
        "BOT_BOTTLE_SIDECAR_DAEMONS=relay",
        "-v",
        &format!("{sock}:/run/bot-bottle"),
        "-v",
        &format!("{tools}:/opt/bot-bottle/bin"),
        "-v",
        &cfg_mount,
        images::SIDECARS_TAG,
    ]);
    assert!(out.success(), "{}", out.stderr_str());
    let up_ip = docker([
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &up,
    ])
    .stdout_str()
    .trim()
    .to_string();

    // The agent: no network, the relay from the tools volume, user node.
    let script = format!(
        "/opt/bot-bottle/bin/bot-bottle-relay 9099=/run/bot-bottle/egress.sock 2>/dev/null &
         ok=0; for i in $(seq 1 100); do
           if r=$(curl -s --max-time 5 http://127.0.0.1:9099/ping); then echo \"RELAY:$r\"; ok=1; break; fi
           sleep 0.1; done
         curl -s --max-time 3 http://upstream:8080/ >/dev/null 2>&1; echo \"DNS:$?\"
         curl -s --max-time 3 http://{up_ip}:8080/ >/dev/null 2>&1; echo \"DIRECT:$?\"
         ls /sys/class/net | tr '\\n' ' '; echo"
    );
    let t = Instant::now();
    let out = docker([
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "node",
        "-v",
        &format!("{sock}:/run/bot-bottle"),
        "-v",
        &format!("{tools}:/opt/bot-bottle/bin:ro"),
        images::CLAUDE_TAG,
        "sh",
        "-c",
        &script,
    ]);
    let text = out.stdout_str();
    loud(&format!(
        "engine_images: network-less agent probe took {:.2?}: {}",
        t.elapsed(),
        text.replace('\n', " | ")
    ));
    assert!(
        text.contains("RELAY:hello from upstream /ping"),
        "{text}\n{}",
        out.stderr_str()
    );
    let code = |k: &str| -> i32 {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    assert_ne!(
        code("DNS:"),
        0,
        "name resolution worked without a network: {text}"
    );
    assert_ne!(code("DIRECT:"), 0, "direct connection succeeded: {text}");
    assert!(text.contains("lo") && !text.contains("eth0"), "{text}");

    // Fail closed: with the bundle gone, the relay has nowhere to go.
    docker(["rm", "-f", &bundle]);
    let out = docker([
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "node",
        "-v",
        &format!("{sock}:/run/bot-bottle"),
        "-v",
        &format!("{tools}:/opt/bot-bottle/bin:ro"),
        images::CLAUDE_TAG,
        "sh",
        "-c",
        "/opt/bot-bottle/bin/bot-bottle-relay 9099=/run/bot-bottle/egress.sock 2>/dev/null &
         sleep 0.5; curl -s --max-time 5 http://127.0.0.1:9099/ping; echo \"AFTER:$?\"",
    ]);
    let text = out.stdout_str();
    assert!(!text.contains("hello from upstream"), "{text}");
    assert!(
        text.contains("AFTER:") && !text.contains("AFTER:0"),
        "{text}"
    );
}
