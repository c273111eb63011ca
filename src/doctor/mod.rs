//! `bot-bottle doctor`: proves on this machine that a bottle fails closed.
//!
//! First the host: engine, compose, gVisor with host unix sockets, free space, image cache.
//! Then a throwaway bottle ([`bottle`]) and every probe of [`probes`] run inside its agent,
//! each judged by which layer refused. The same probes are the engine suite's
//! (`tests/escape.rs`), so what CI proves is what an operator can re-check at home.

pub mod bottle;
pub mod probes;
pub(crate) mod reload;
pub(crate) mod scripts;
pub mod targets;

use std::path::{Path, PathBuf};

use crate::backend::docker::{ComposeCmd, docker, engine_probe};
use crate::runner::Runner;

/// Outcome of one host check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Works, with a note (e.g. no gVisor: bottles run under runc).
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the report: a host check or a probe.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// `host` or the probe's group (`network`, `credentials`, `escape`).
    pub group: String,
    pub probe: String,
    /// THREATS case(s), empty for host checks.
    pub case: String,
    pub expected: String,
    pub seen: String,
    pub status: Status,
}

/// The least free space a bottle's state needs on the home's filesystem, and the image
/// store's, before `doctor` calls the host short of it.
pub const MIN_FREE_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Free space the engine should have for images: an agent image is about 0.9 GB and the
/// sidecar image about 0.45 GB, and a rebuild needs room for the new one before the old goes.
pub(crate) const ENGINE_MIN_FREE_BYTES: u64 = 4 * 1024 * 1024 * 1024;

fn row(probe: &str, expected: &str, seen: String, status: Status) -> Row {
    Row {
        group: "host".into(),
        probe: probe.into(),
        case: String::new(),
        expected: expected.into(),
        seen,
        status,
    }
}

/// The host checks. `home` is where state dirs go; `images` the tags a bottle needs.
pub fn host_checks(
    runner: &dyn Runner,
    docker_host: Option<&str>,
    home: &Path,
    images: &[String],
) -> Vec<Row> {
    let mut rows = Vec::new();
    let engine = runner.run(&docker([
        "version",
        "--format",
        "{{.Server.Version}} (API {{.Server.APIVersion}})",
    ]));
    let engine_ok = matches!(&engine, Ok(o) if o.success());
    rows.push(match &engine {
        Ok(o) if o.success() => row(
            "engine",
            "a Docker engine answers",
            format!("Docker {}", o.stdout_str().trim()),
            Status::Pass,
        ),
        Ok(o) => row(
            "engine",
            "a Docker engine answers",
            format!(
                "no answer: {}; start Docker or set DOCKER_HOST",
                o.stderr_str().trim().lines().last().unwrap_or("")
            ),
            Status::Fail,
        ),
        Err(e) => row(
            "engine",
            "a Docker engine answers",
            format!("{e}; install Docker"),
            Status::Fail,
        ),
    });
    rows.push(match ComposeCmd::detect(runner) {
        Ok(c) => row(
            "compose",
            "docker compose (v2) or docker-compose (v1)",
            if c.v1 {
                "docker-compose (v1)".into()
            } else {
                "docker compose (v2)".into()
            },
            Status::Pass,
        ),
        Err(e) => row(
            "compose",
            "docker compose (v2) or docker-compose (v1)",
            e.to_string(),
            Status::Fail,
        ),
    });
    let gvisor = engine_probe::probe_gvisor(docker_host, std::time::Duration::from_secs(2));
    rows.push(match gvisor {
        Some(engine_probe::Gvisor::Usable) => row(
            "gvisor",
            "runsc registered with --host-uds=open (agents run under gVisor)",
            "runsc usable; agents run under gVisor".into(),
            Status::Pass,
        ),
        Some(engine_probe::Gvisor::NoHostUds) => row(
            "gvisor",
            "runsc registered with --host-uds=open (agents run under gVisor)",
            "runsc lacks --host-uds=open; agents run under runc (add it to the runsc entry in daemon.json)".into(),
            Status::Warn,
        ),
        Some(engine_probe::Gvisor::Absent) => row(
            "gvisor",
            "runsc registered with --host-uds=open (agents run under gVisor)",
            "not registered; agents run under runc (install gVisor for a second kernel boundary)"
                .into(),
            Status::Warn,
        ),
        None => row(
            "gvisor",
            "runsc registered with --host-uds=open (agents run under gVisor)",
            "the engine socket did not answer the question (remote engine?); agents run under runc unless it has runsc".into(),
            Status::Warn,
        ),
    });
    let probe_dir = std::iter::successors(Some(home), |p| p.parent()).find(|p| p.exists());
    rows.push(match probe_dir {
        Some(dir) => STATE_SPACE.row(
            home,
            crate::state::free_bytes(dir).map_err(|e| e.to_string()),
        ),
        None => row(
            STATE_SPACE.probe,
            STATE_SPACE.expected,
            format!("no existing directory above {}", home.display()),
            Status::Fail,
        ),
    });
    if engine_ok {
        rows.push(engine_disk(runner));
        let mut missing = Vec::new();
        for tag in images {
            let ok = runner
                .run(&docker([
                    "image",
                    "inspect",
                    "--format",
                    "{{.Id}}",
                    tag.as_str(),
                ]))
                .is_ok_and(|o| o.success());
            if !ok {
                missing.push(tag.clone());
            }
        }
        rows.push(if missing.is_empty() {
            row(
                "image-cache",
                "the agent and sidecar images are built",
                format!("cached: {}", images.join(", ")),
                Status::Pass,
            )
        } else {
            row(
                "image-cache",
                "the agent and sidecar images are built",
                format!(
                    "not built yet: {} (doctor builds them now; `bot-bottle build-images` does it ahead of time)",
                    missing.join(", ")
                ),
                Status::Warn,
            )
        });
    }
    rows
}

/// A free-space row: `min` or more passes; less is `short`, with what to do about it.
struct SpaceCheck {
    probe: &'static str,
    expected: &'static str,
    min: u64,
    short: Status,
    hint: &'static str,
}

impl SpaceCheck {
    fn row(&self, at: &Path, free: Result<u64, String>) -> Row {
        let (seen, status) = match free {
            Ok(free) if free >= self.min => (
                format!("{} MiB free at {}", free / (1024 * 1024), at.display()),
                Status::Pass,
            ),
            Ok(free) => (
                format!(
                    "only {} MiB free at {}; {}",
                    free / (1024 * 1024),
                    at.display(),
                    self.hint
                ),
                self.short,
            ),
            Err(e) => (e, self.short),
        };
        row(self.probe, self.expected, seen, status)
    }
}

/// State dirs: a bottle that cannot keep its transcript must not start.
const STATE_SPACE: SpaceCheck = SpaceCheck {
    probe: "free-space",
    expected: "at least 2 GiB free for state dirs",
    min: MIN_FREE_BYTES,
    short: Status::Fail,
    hint: "free disk space or point BOT_BOTTLE_HOME elsewhere",
};

/// Images: nothing is unsafe when space is short, but a build stops with `no space left on
/// device`, so it is a warning.
const ENGINE_SPACE: SpaceCheck = SpaceCheck {
    probe: "engine-disk",
    expected: "at least 4 GiB free for images at the engine's data root",
    min: ENGINE_MIN_FREE_BYTES,
    short: Status::Warn,
    hint: "an image build may fail with `no space left on device`: `docker image prune` removes images nothing uses",
};

/// The engine's data root, measured when it is on this host.
fn engine_disk(runner: &dyn Runner) -> Row {
    let root = runner
        .run(&docker(["info", "--format", "{{.DockerRootDir}}"]))
        .ok()
        .filter(|o| o.success())
        .map(|o| PathBuf::from(o.stdout_str().trim()))
        .filter(|p| p.is_absolute());
    let not_measured = |why: String| {
        row(
            ENGINE_SPACE.probe,
            ENGINE_SPACE.expected,
            format!("{why}; not measured"),
            Status::Warn,
        )
    };
    match root {
        None => not_measured("the engine did not name its data root".into()),
        Some(root) if !root.is_dir() => not_measured(format!(
            "{} is not on this host (a remote engine or one in a VM)",
            root.display()
        )),
        Some(root) => ENGINE_SPACE.row(
            &root,
            crate::state::free_bytes(&root).map_err(|e| e.to_string()),
        ),
    }
}

/// The report as a table: probe, expected, seen, pass/fail (long cells are cut).
pub fn render_table(rows: &[Row]) -> String {
    fn cut(s: &str, n: usize) -> String {
        let s: String = s
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if s.chars().count() <= n {
            s
        } else {
            let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
            t.push('…');
            t
        }
    }
    let mut out = String::new();
    let head = ["result", "case", "probe", "expected", "seen"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.status.as_str().to_string(),
                r.case.clone(),
                format!("{}/{}", r.group, r.probe),
                cut(&r.expected, 60),
                cut(&r.seen, 70),
            ]
        })
        .collect();
    let mut w = head.map(str::len);
    for c in &cells {
        for (i, v) in c.iter().enumerate().take(4) {
            w[i] = w[i].max(v.chars().count());
        }
    }
    let fmt_line = |c: &[String; 5]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}\n",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        )
        .trim_end()
        .to_string()
            + "\n"
    };
    out.push_str(&fmt_line(&head.map(String::from)));
    for c in &cells {
        out.push_str(&fmt_line(c));
    }
    out
}

/// Whether the report shows anything open or broken.
pub fn any_failed(rows: &[Row]) -> bool {
    rows.iter().any(|r| r.status == Status::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{Output, RecordingRunner};

    #[test]
    fn host_checks_name_what_is_missing() {
        let runner = RecordingRunner::new(|spec| {
            let argv = spec.argv();
            if argv.contains(&"version") && argv.contains(&"--format") {
                Output::ok("20.10.24 (API 1.41)\n")
            } else if argv.contains(&"compose") {
                Output::ok("2.40.3\n")
            } else if argv.contains(&"inspect") && argv.contains(&"agent:1") {
                Output::failed(1, "No such image")
            } else {
                Output::ok("sha256:1\n")
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let rows = host_checks(
            &runner,
            Some("unix:///nonexistent/docker.sock"),
            &dir.path().join("home"),
            &["agent:1".into(), "sidecar:1".into()],
        );
        let get = |n: &str| rows.iter().find(|r| r.probe == n).unwrap();
        assert_eq!(get("engine").status, Status::Pass);
        assert_eq!(get("compose").status, Status::Pass);
        assert_eq!(get("gvisor").status, Status::Warn);
        assert_eq!(get("image-cache").status, Status::Warn);
        assert!(get("image-cache").seen.contains("agent:1"));
        assert!(!get("image-cache").seen.contains("sidecar:1"));
        // `sha256:1` is no data root: said, not measured, and never a failure
        assert_eq!(get("engine-disk").status, Status::Warn);
        assert!(get("engine-disk").seen.contains("not measured"));
    }

    #[test]
    fn the_engine_disk_is_measured_only_on_this_host_and_low_space_warns() {
        let answer = |root: String| {
            RecordingRunner::new(move |spec| {
                assert_eq!(
                    spec.argv(),
                    ["docker", "info", "--format", "{{.DockerRootDir}}"]
                );
                Output::ok(format!("{root}\n"))
            })
        };
        let remote = engine_disk(&answer("/nonexistent/docker-root".into()));
        assert_eq!(remote.status, Status::Warn);
        assert!(remote.seen.contains("not on this host"), "{}", remote.seen);

        let dir = tempfile::tempdir().unwrap();
        let local = engine_disk(&answer(dir.path().display().to_string()));
        assert!(
            local.seen.contains(&dir.path().display().to_string()),
            "{}",
            local.seen
        );
        assert!(local.seen.contains("MiB free"), "{}", local.seen);

        let root = Path::new("/var/lib/docker");
        let low = ENGINE_SPACE.row(root, Ok(ENGINE_MIN_FREE_BYTES - 1));
        assert_eq!(low.status, Status::Warn);
        assert!(low.seen.contains("docker image prune"), "{}", low.seen);
        assert_eq!(
            ENGINE_SPACE.row(root, Ok(ENGINE_MIN_FREE_BYTES)).status,
            Status::Pass
        );
        let unreadable = ENGINE_SPACE.row(root, Err("permission denied".into()));
        assert_eq!(unreadable.status, Status::Warn);
        // the same figures for state dirs fail: a bottle must be able to keep its transcript
        let home = Path::new("/home/me/.bot-bottle");
        let short = STATE_SPACE.row(home, Ok(MIN_FREE_BYTES - 1));
        assert_eq!(short.status, Status::Fail);
        assert!(short.seen.contains("BOT_BOTTLE_HOME"), "{}", short.seen);
        assert_eq!(
            STATE_SPACE.row(home, Ok(MIN_FREE_BYTES)).status,
            Status::Pass
        );
    }

    #[test]
    fn the_table_has_one_line_per_row_and_marks_failures() {
        let rows = vec![
            Row {
                group: "network".into(),
                probe: "direct-tcp".into(),
                case: "N1".into(),
                expected: "no route".into(),
                seen: "ENETUNREACH x10".into(),
                status: Status::Pass,
            },
            Row {
                group: "network".into(),
                probe: "dns".into(),
                case: "N6".into(),
                expected: "never sent".into(),
                seen: "dns:8.8.8.8 ANSWERED\nforged line".into(),
                status: Status::Fail,
            },
        ];
        let t = render_table(&rows);
        assert_eq!(t.lines().count(), 3, "{t}");
        assert!(t.lines().nth(2).unwrap().starts_with("FAIL"));
        assert!(any_failed(&rows));
        assert!(!any_failed(&rows[..1]));
    }
}
