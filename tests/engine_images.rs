//! Engine tests (real Docker, `BOT_BOTTLE_ENGINE_TESTS=1`): the repo's Dockerfiles build
//! through `images`, the provider CLI runs in the agent image, a second `ensure_image` is a
//! cache hit, and the relay gives a `--network none` container its only way to the bundle.
//!
//! Without the variable every test reports itself as skipped on the real stderr.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bot_bottle::backend::docker::build::{
    self as images, ImageSpec, ImageStatus, ensure_image, find_sidecar_bin_dir_from,
};
use bot_bottle::plan::{HostEnv, ProviderKind, SIDECAR_TAG, provider::default_image};

/// The extra CAs as the plan reads them from this host.
fn host_extra_cas() -> Result<Vec<Vec<u8>>, bot_bottle::plan::PlanError> {
    bot_bottle::plan::extra_cas(&HostEnv::from_process())
}

/// The Claude image's tag, as the plan defines it.
fn claude_tag() -> &'static str {
    default_image(ProviderKind::Claude)
}
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
    let exe = std::env::current_exe().expect("test binary path");
    let bin = find_sidecar_bin_dir_from(&exe).expect("sidecar binaries next to the test binary");
    (
        ImageSpec::sidecars(&bin, &cas, None),
        ImageSpec::agent(ProviderKind::Claude, &cas, None),
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
#[cfg_attr(
    not(engine_tests),
    ignore = "SKIPPED: engine test; build with BOT_BOTTLE_ENGINE_TESTS=1 and a Docker engine"
)]
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
        claude_tag(),
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
        claude_tag(),
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
#[cfg_attr(
    not(engine_tests),
    ignore = "SKIPPED: engine test; build with BOT_BOTTLE_ENGINE_TESTS=1 and a Docker engine"
)]
fn second_ensure_is_a_cache_hit() {
    if !enabled("second_ensure_is_a_cache_hit") {
        return;
    }
    let b = built();
    let _g = engine_lock();
    // Private tags: other users of the same engine may rebuild the shared tags meanwhile.
    let (sidecars, claude) = specs();
    for (name, spec) in [("sidecars", sidecars), ("claude", claude)] {
        let tag = format!("bot-bottle-test-{}-{name}:latest", std::process::id());
        let spec = ImageSpec {
            tag: tag.clone(),
            ..spec
        };
        let t = Instant::now();
        let first = ensure_image(&RealRunner, &spec).unwrap();
        let rebuild = t.elapsed();
        let t = Instant::now();
        let second = ensure_image(&RealRunner, &spec).unwrap();
        let warm = t.elapsed();
        docker(["rmi", "-f", &tag]);
        loud(&format!(
            "engine_images: {name}: new tag, layers cached: {first} in {rebuild:.2?}; second ensure: {second} in {warm:.2?}"
        ));
        assert_eq!(first, ImageStatus::Built, "{name}: a new tag must be built");
        assert_eq!(
            second,
            ImageStatus::Cached,
            "{name}: second ensure must not build"
        );
    }
    loud(&format!(
        "engine_images: first ensure this run: sidecars {} {:.2?}, claude {} {:.2?}",
        b.sidecars.0, b.sidecars.1, b.claude.0, b.claude.1
    ));
}

#[test]
#[cfg_attr(
    not(engine_tests),
    ignore = "SKIPPED: engine test; build with BOT_BOTTLE_ENGINE_TESTS=1 and a Docker engine"
)]
fn relay_is_the_only_way_out_of_a_network_less_container() {
    if !enabled("relay_is_the_only_way_out_of_a_network_less_container") {
        return;
    }
    built();
    let _g = engine_lock();
    let p = format!("bot-bottle-test-{}", std::process::id());
    let (net, sock) = (format!("{p}-net"), format!("{p}-sock"));
    let (up, bundle) = (format!("{p}-up"), format!("{p}-bundle"));
    let _cleanup = Cleanup {
        containers: vec![up.clone(), bundle.clone()],
        volumes: vec![sock.clone()],
        networks: vec![net.clone()],
    };
    assert!(docker(["network", "create", &net]).success());
    assert!(docker(["volume", "create", &sock]).success());

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
        claude_tag(),
        "node",
        "-e",
        server,
    ]);
    assert!(out.success(), "{}", out.stderr_str());

    // The bundle: publishes the relay binary into the socket volume (as the compose file
    // does), then bot-bottle-init runs the relay in reverse mode, argv from `relay.args`.
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
        &cfg_mount,
        "--entrypoint",
        "/bin/sh",
        SIDECAR_TAG,
        "-c",
        "cp /usr/local/bin/bot-bottle-relay /run/bot-bottle/.relay.tmp \\
         && mv /run/bot-bottle/.relay.tmp /run/bot-bottle/bot-bottle-relay \\
         && exec /usr/local/bin/bot-bottle-init",
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

    // The agent: no network, the relay published by the bundle, user node.
    let script = format!(
        "for i in $(seq 1 400); do [ -x /run/bot-bottle/bot-bottle-relay ] && break; sleep 0.05; done
         /run/bot-bottle/bot-bottle-relay 9099=/run/bot-bottle/egress.sock 2>/dev/null &
         for i in $(seq 1 100); do
           if r=$(curl -s --max-time 5 http://127.0.0.1:9099/ping); then echo \"RELAY:$r\"; break; fi
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
        claude_tag(),
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

    // Fail closed, bundle side: a dead daemon takes the whole bundle down, non-zero.
    let kill_relay = r#"for d in /proc/[0-9]*; do
        case "$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null)" in
          "bot-bottle-relay --unix-to-tcp"*) kill "${d#/proc/}";;
        esac; done"#;
    // The exec itself may end abruptly: the bundle stops as soon as the daemon dies, which
    // is what the `docker wait` below checks.
    let _ = docker(["exec", &bundle, "sh", "-c", kill_relay]);
    let waited = RealRunner
        .run(&ProcessSpec::new("timeout").args(["-k", "5", "60", "docker", "wait", &bundle]))
        .unwrap();
    let code: i32 = waited.stdout_str().trim().parse().unwrap_or(-1);
    assert!(
        code != 0 && code != -1,
        "bundle exit code {code}: {}",
        waited.stderr_str()
    );
    let logs = docker(["logs", &bundle]);
    assert!(
        logs.stderr_str().contains("fail closed"),
        "{}",
        logs.stderr_str()
    );

    // Fail closed, agent side: with the bundle gone, the relay has nowhere to go.
    let out = docker([
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "node",
        "-v",
        &format!("{sock}:/run/bot-bottle"),
        claude_tag(),
        "sh",
        "-c",
        "/run/bot-bottle/bot-bottle-relay 9099=/run/bot-bottle/egress.sock 2>/dev/null &
         sleep 0.5; curl -s --max-time 5 http://127.0.0.1:9099/ping; echo \"AFTER:$?\"",
    ]);
    let text = out.stdout_str();
    assert!(!text.contains("hello from upstream"), "{text}");
    assert!(
        text.contains("AFTER:") && !text.contains("AFTER:0"),
        "{text}"
    );
}
