//! `smolvm machine …` commands as values, and terminal-size forwarding.
//!
//! `machine exec` runs as root in the VM; the agent's own commands switch to the agent user
//! with `runuser -u` (not a login shell: PAM session setup can hang in a minimal guest) and
//! get `HOME`/`USER` set explicitly. smolvm gives an exec's pseudo-terminal no window size
//! and never forwards a resize, so while an interactive session runs, a side thread reads
//! the host terminal's size and pushes every change into the VM with `stty`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::backend::docker::provision::{AGENT_HOME, AGENT_USER, WORKDIR};
use crate::plan::ContainerLimits;
use crate::runner::{ProcessSpec, Runner};

use super::smolvm;

/// `machine create` from the packed artifact, networking on, allowlist = `allow_cidr` only,
/// with the agent's CPU and memory limits (whole vCPUs, MiB; smolvm has no pids limit).
/// `--net` is explicit: with `--from`, smolvm does not infer it from `--allow-cidr`.
pub(crate) fn create_spec(
    machine: &str,
    payload: &std::path::Path,
    allow_cidr: &str,
    limits: &ContainerLimits,
) -> ProcessSpec {
    smolvm(["machine", "create", "--name", machine])
        .arg("--cpus")
        .arg(limits.vcpus().min(255).to_string())
        .arg("--mem")
        .arg(limits.memory_mib().min(u64::from(u32::MAX)).to_string())
        .arg("--from")
        .arg(payload.display().to_string())
        .args(["--net", "--allow-cidr", allow_cidr])
}

pub(crate) fn start_spec(machine: &str) -> ProcessSpec {
    smolvm(["machine", "start", "--name", machine])
}

pub(crate) fn stop_spec(machine: &str) -> ProcessSpec {
    smolvm(["machine", "stop", "--name", machine])
}

pub(crate) fn delete_spec(machine: &str) -> ProcessSpec {
    smolvm(["machine", "delete", "-f", machine])
}

pub(crate) fn list_spec() -> ProcessSpec {
    smolvm(["machine", "ls", "--json"])
}

/// `machine exec` as root with `argv`; `stdin` makes it interactive-capable (`-i`).
pub(crate) fn exec_root_spec(machine: &str, argv: &[&str], stdin: bool) -> ProcessSpec {
    let mut spec = smolvm(["machine", "exec", "--name", machine]);
    if stdin {
        spec = spec.arg("-i");
    }
    spec.arg("--").args(argv.iter().copied())
}

/// `dir` of the VM as a tar stream on stdout, its own name as the top entry (the shape
/// [`crate::state::StateDir::replace_from_tar`] takes).
pub(crate) fn tar_out_spec(machine: &str, dir: &str) -> ProcessSpec {
    exec_root_spec(
        machine,
        &[
            "sh",
            "-c",
            "cd \"$(dirname \"$0\")\" && exec tar -cf - \"$(basename \"$0\")\"",
            dir,
        ],
        false,
    )
}

/// Repairs what packing changes: smolvm maps file owners to the packing user, so the agent's
/// home and the temp dirs get their owners and modes back. One exec, right after start.
pub(crate) const INIT_SCRIPT: &str = "chown -R node:node /home/node && chown root:root /tmp /var/tmp \
                               && chmod 1777 /tmp /var/tmp";

/// Runs `command` as the agent user in the workspace, with `env` (non-secret values only:
/// they are on the command line).
pub(crate) fn agent_exec_spec(
    machine: &str,
    env: &BTreeMap<String, String>,
    command: &[String],
    tty: bool,
) -> ProcessSpec {
    let mut spec = smolvm(["machine", "exec", "--name", machine, "-i"]);
    if tty {
        spec = spec.arg("-t");
    }
    spec = spec
        .args(["--", "runuser", "-u", AGENT_USER, "--", "env"])
        .arg(format!("HOME={AGENT_HOME}"))
        .arg(format!("USER={AGENT_USER}"));
    for (k, v) in env {
        spec = spec.arg(format!("{k}={v}"));
    }
    spec.args(["sh", "-c", "cd \"$0\" && exec \"$@\"", WORKDIR])
        .args(command.iter().cloned())
}

/// Sets every pseudo-terminal in the VM to `rows`×`cols`; the kernel then signals the
/// foreground process, so the agent redraws.
pub(crate) fn resize_spec(machine: &str, rows: u16, cols: u16) -> ProcessSpec {
    exec_root_spec(
        machine,
        &[
            "sh",
            "-c",
            &format!(
                "for t in /dev/pts/[0-9]*; do stty -F \"$t\" rows {rows} cols {cols} 2>/dev/null; done; true"
            ),
        ],
        false,
    )
}

/// The host terminal's size from stdin, stdout or stderr, whichever is a terminal.
pub(crate) fn host_terminal_size() -> Option<(u16, u16)> {
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
        if rc == 0 && ws.ws_row > 0 && ws.ws_col > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

/// Decides when to push a size: the first known size, then each change; never an unknown
/// size.
#[derive(Debug, Default)]
pub(crate) struct SizeTracker {
    last: Option<(u16, u16)>,
}

impl SizeTracker {
    pub(crate) fn update(&mut self, now: Option<(u16, u16)>) -> Option<(u16, u16)> {
        match now {
            Some(size) if self.last != Some(size) => {
                self.last = Some(size);
                Some(size)
            }
            _ => None,
        }
    }
}

/// How long after the session starts the first size goes in: a second exec racing the
/// session's own start can break it on smolvm 0.8.
pub(crate) const FIRST_RESIZE_DELAY: Duration = Duration::from_secs(2);
const RESIZE_POLL: Duration = Duration::from_millis(250);

/// Runs `session` while forwarding the host terminal size into `machine`. Resize failures
/// are ignored: a wrong size is cosmetic.
pub(crate) fn with_size_forwarding<T>(
    runner: &dyn Runner,
    machine: &str,
    read_size: &(dyn Fn() -> Option<(u16, u16)> + Sync),
    session: impl FnOnce() -> T,
) -> T {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut tracker = SizeTracker::default();
            let mut waited = Duration::ZERO;
            while !done.load(Ordering::SeqCst) {
                if waited >= FIRST_RESIZE_DELAY {
                    if let Some((rows, cols)) = tracker.update(read_size()) {
                        let _ = runner.run(&resize_spec(machine, rows, cols));
                    }
                }
                std::thread::sleep(RESIZE_POLL);
                waited += RESIZE_POLL;
            }
        });
        let out = session();
        done.store(true, Ordering::SeqCst);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_is_created_with_the_alias_as_its_only_cidr_and_its_limits() {
        let limits = ContainerLimits {
            cpus_centi: 150,
            memory_bytes: 4 << 30,
            pids: 2048,
            from_bottle: Default::default(),
            cpus_capped_from: None,
        };
        let spec = create_spec(
            "bot-bottle-rev-ab12cd",
            std::path::Path::new("/c/k.smolmachine"),
            "127.0.0.16/32",
            &limits,
        );
        assert_eq!(
            spec.argv(),
            vec![
                "smolvm",
                "machine",
                "create",
                "--name",
                "bot-bottle-rev-ab12cd",
                "--cpus",
                "2",
                "--mem",
                "4096",
                "--from",
                "/c/k.smolmachine",
                "--net",
                "--allow-cidr",
                "127.0.0.16/32"
            ]
        );
        assert_eq!(spec.args.iter().filter(|a| *a == "--allow-cidr").count(), 1);
    }

    #[test]
    fn the_session_runs_as_the_agent_in_the_workspace() {
        let env = BTreeMap::from([(
            "HTTPS_PROXY".to_string(),
            "http://127.0.0.16:9099".to_string(),
        )]);
        let spec = agent_exec_spec("m", &env, &["claude".to_string(), "--x".to_string()], true);
        let argv = spec.argv();
        assert_eq!(
            &argv[..7],
            &["smolvm", "machine", "exec", "--name", "m", "-i", "-t"]
        );
        assert!(argv.contains(&"runuser") && argv.contains(&"node"));
        assert!(argv.contains(&"HTTPS_PROXY=http://127.0.0.16:9099"));
        assert_eq!(&argv[argv.len() - 3..], &[WORKDIR, "claude", "--x"]);
        let no_tty = agent_exec_spec("m", &env, &["true".to_string()], false);
        assert!(!no_tty.args.contains(&"-t".to_string()));
    }

    #[test]
    fn resizes_are_sent_once_per_change() {
        let mut t = SizeTracker::default();
        assert_eq!(t.update(None), None);
        assert_eq!(t.update(Some((40, 120))), Some((40, 120)));
        assert_eq!(t.update(Some((40, 120))), None);
        assert_eq!(t.update(None), None);
        assert_eq!(t.update(Some((50, 100))), Some((50, 100)));
        let spec = resize_spec("m", 50, 100).to_string();
        assert!(spec.contains("rows 50 cols 100"), "{spec}");
    }

    #[test]
    fn forwarding_pushes_the_size_while_the_session_runs() {
        let rec = crate::runner::RecordingRunner::succeeding();
        let code = with_size_forwarding(&rec, "m", &|| Some((33, 99)), || {
            // The session lasts until the first push arrives (bounded, so a broken forwarder
            // fails the assertion below instead of hanging).
            for _ in 0..200 {
                if !rec.calls().is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(600));
            7
        });
        assert_eq!(code, 7);
        let calls = rec.calls();
        // One push for the one size seen, however many polls happened.
        assert_eq!(calls.len(), 1, "{calls:#?}");
        assert!(calls[0].to_string().contains("rows 33 cols 99"));
    }
}
