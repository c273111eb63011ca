//! The sidecar bundle's init: starts the gate daemons, forwards stop signals, reaps every
//! child, and takes the whole bundle down as soon as one daemon dies.
//!
//! Failing closed is the point: a bundle with a dead egress or git gate must not keep running
//! half-open, so any daemon exit stops the others and the init exits non-zero (compose then
//! reports the bundle as exited and the agent has no way out).
//!
//! Configuration (no secrets in it; daemons read secrets from their own environment):
//! - `BOT_BOTTLE_SIDECAR_DAEMONS=egress,git-gate`: the daemons to start, in order.
//! - `$BOT_BOTTLE_SIDECAR_CONFIG_DIR/<name>.args.json` (default dir [`DEFAULT_CONFIG_DIR`]): a
//!   JSON array of strings, the daemon's argv (`["bot-bottle-egress", "--routes", "…"]`), the
//!   wire type [`crate::sidecar::wire::DaemonArgv`].
//! - `BOT_BOTTLE_SIDECAR_STOP_TIMEOUT` (e.g. `5s`, `500ms`; default [`DEFAULT_STOP_TIMEOUT`]):
//!   how long daemons get between SIGTERM and SIGKILL.
//!
//! Each daemon runs in its own process group, so signals reach the helpers it spawns too. The
//! init registers as a child subreaper, so orphaned grandchildren are reaped even when the init
//! is not PID 1 (e.g. under compose's `init: true`).
//!
//! Signal state is normalised at both ends, because both survive `exec`: the init takes its
//! signals ([`claim_signals`]) before anything else, and every daemon starts with no signal
//! blocked and every signal at its default action. A daemon that inherited an ignored SIGINT
//! (any program started in the background by a non-interactive shell has one) would never act
//! on the SIGINT the init forwards, and the bundle would wait out the stop timeout instead.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::envvars;

/// Where `<name>.args.json` files are read from when `BOT_BOTTLE_SIDECAR_CONFIG_DIR` is unset.
pub(crate) const DEFAULT_CONFIG_DIR: &str = "/etc/bot-bottle/sidecar";
/// Grace period between SIGTERM and SIGKILL.
pub(crate) const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Exit code for configuration errors (nothing was started).
pub const EXIT_CONFIG: i32 = 2;
/// After SIGKILL, how long to wait for stragglers before exiting anyway.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// Signals forwarded to every daemon's process group.
const FORWARDED: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

#[derive(thiserror::Error, Debug)]
pub enum InitError {
    #[error(
        "{} is empty; set it to a comma separated list of daemons (e.g. `egress`)",
        envvars::SIDECAR_DAEMONS
    )]
    NoDaemons,
    #[error(
        "invalid daemon name `{name}` in {}; use lowercase letters, digits and `-`",
        envvars::SIDECAR_DAEMONS
    )]
    BadName { name: String },
    #[error("daemon `{name}` is listed twice in {}", envvars::SIDECAR_DAEMONS)]
    Duplicate { name: String },
    #[error("cannot read {}: {source}; mount the daemon's argv file into the sidecar config dir", .path.display())]
    ReadArgs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} must hold a non-empty JSON array of strings (the daemon's argv): {reason}", .path.display())]
    BadArgs { path: PathBuf, reason: String },
    #[error(
        "invalid {}=`{value}`; use a duration like `5s` or `500ms`",
        envvars::SIDECAR_STOP_TIMEOUT
    )]
    BadTimeout { value: String },
    #[error("signal setup failed: {0}")]
    Signals(#[source] std::io::Error),
}

/// One daemon to supervise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DaemonSpec {
    pub name: String,
    pub argv: Vec<String>,
}

/// Everything the init needs, read once at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitConfig {
    pub(crate) daemons: Vec<DaemonSpec>,
    pub(crate) stop_timeout: Duration,
}

/// Splits the comma list; empty items are ignored, names are validated and unique.
pub(crate) fn parse_daemon_list(list: &str) -> Result<Vec<String>, InitError> {
    let mut names: Vec<String> = Vec::new();
    for raw in list.split(',') {
        let name = raw.trim();
        if name.is_empty() {
            continue;
        }
        let ok = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(InitError::BadName {
                name: name.to_string(),
            });
        }
        if names.iter().any(|n| n == name) {
            return Err(InitError::Duplicate {
                name: name.to_string(),
            });
        }
        names.push(name.to_string());
    }
    if names.is_empty() {
        return Err(InitError::NoDaemons);
    }
    Ok(names)
}

/// Reads `<dir>/<name>.args.json`.
pub(crate) fn read_argv(dir: &Path, name: &str) -> Result<Vec<String>, InitError> {
    use crate::sidecar::wire::{DaemonArgv, WireFile};
    let path = dir.join(crate::sidecar::wire::daemon_args_file(name));
    let text = std::fs::read_to_string(&path).map_err(|source| InitError::ReadArgs {
        path: path.clone(),
        source,
    })?;
    let DaemonArgv(argv) = DaemonArgv::parse(&text).map_err(|reason| InitError::BadArgs {
        path: path.clone(),
        reason,
    })?;
    if argv.first().is_none_or(String::is_empty) {
        return Err(InitError::BadArgs {
            path,
            reason: "the array is empty or names an empty program".to_string(),
        });
    }
    Ok(argv)
}

impl InitConfig {
    /// Builds the config from a daemon list and a config dir.
    pub fn load(list: &str, config_dir: &Path, stop_timeout: Duration) -> Result<Self, InitError> {
        let daemons = parse_daemon_list(list)?
            .into_iter()
            .map(|name| {
                let argv = read_argv(config_dir, &name)?;
                Ok(DaemonSpec { name, argv })
            })
            .collect::<Result<Vec<_>, InitError>>()?;
        Ok(InitConfig {
            daemons,
            stop_timeout,
        })
    }

    /// Reads the `BOT_BOTTLE_SIDECAR_*` variables.
    pub fn from_env() -> Result<Self, InitError> {
        let list = std::env::var(envvars::SIDECAR_DAEMONS).unwrap_or_default();
        let dir = std::env::var_os(envvars::SIDECAR_CONFIG_DIR)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_CONFIG_DIR), PathBuf::from);
        let timeout = match std::env::var(envvars::SIDECAR_STOP_TIMEOUT) {
            Ok(v) if !v.trim().is_empty() => humantime::parse_duration(v.trim())
                .map_err(|_| InitError::BadTimeout { value: v.clone() })?,
            _ => DEFAULT_STOP_TIMEOUT,
        };
        Self::load(&list, &dir, timeout)
    }
}

/// A signal set holding `signals`.
fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write into the provided set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// The stop signals the init forwards.
fn forwarded_set() -> libc::sigset_t {
    sigset(&FORWARDED)
}

/// Every signal the init handles: the forwarded ones and SIGCHLD.
fn handled_set() -> libc::sigset_t {
    let mut all = FORWARDED.to_vec();
    all.push(libc::SIGCHLD);
    sigset(&all)
}

/// Takes the signals the init handles: blocks them, so they queue for `sigtimedwait`, then sets
/// them to their default action. Call it first thing in `main`; [`run`] calls it again.
///
/// Blocking early means a stop signal sent during startup waits in the queue: as PID 1 an
/// unblocked signal at its default action is dropped by the kernel, anywhere else it would kill
/// the init before it could stop any daemon. The default action matters for SIGCHLD: an
/// inherited `SIG_IGN` makes the kernel reap exited daemons itself, and the init would never
/// learn that a gate died (fail open). The order (block, then reset) keeps a signal that
/// arrives in between: a blocked signal is queued even while it is ignored.
pub fn claim_signals() -> Result<(), InitError> {
    let set = handled_set();
    // SAFETY: valid set pointer; the old mask is not needed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(InitError::Signals(std::io::Error::from_raw_os_error(rc)));
    }
    for sig in FORWARDED.into_iter().chain([libc::SIGCHLD]) {
        // SAFETY: installs SIG_DFL; no handler code runs.
        if unsafe { libc::signal(sig, libc::SIG_DFL) } == libc::SIG_ERR {
            return Err(InitError::Signals(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Runs in the child between `fork` and `exec` (async-signal-safe calls only): every standard
/// signal back to its default action, then an empty mask. `exec` resets caught signals but
/// keeps ignored ones and the mask, and `std::process::Command` resets neither (SIGPIPE
/// aside). Dispositions first, so a signal already pending meets its default action.
fn reset_signals_for_exec() -> std::io::Result<()> {
    for sig in 1..32 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: sigaction-backed, async-signal-safe; installs SIG_DFL only.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    // SAFETY: sigemptyset writes into a local set; pthread_sigmask reads it.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        let rc = libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}

/// Waits up to `timeout` for one of the blocked signals.
fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<libc::c_int> {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(i32::try_from(timeout.subsec_nanos()).unwrap_or(0)),
    };
    // SAFETY: valid pointers; a null siginfo is allowed.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

fn decode_status(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

/// Reaps every exited child without blocking. Returns `(pid, code)` pairs.
fn reap_all() -> (Vec<(libc::pid_t, i32)>, bool) {
    let mut out = Vec::new();
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: plain syscall with a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            out.push((pid, decode_status(status)));
            continue;
        }
        // pid == 0: children remain; -1/ECHILD: none left.
        let none_left =
            pid < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD);
        return (out, none_left);
    }
}

fn signal_group(pgid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: plain syscall; ESRCH (group already gone) is expected and ignored.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

fn signal_name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGKILL => "SIGKILL",
        _ => "signal",
    }
}

/// Why the bundle is going down; decides the exit code.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// A daemon exited on its own with this code (0 becomes 1: a gate must not just vanish).
    DaemonExited(i32),
    /// A daemon could not be started.
    SpawnFailed(i32),
    /// We were asked to stop with this signal.
    Signalled(libc::c_int),
}

impl Stop {
    fn exit_code(self) -> i32 {
        match self {
            Stop::DaemonExited(0) => 1,
            Stop::DaemonExited(c) | Stop::SpawnFailed(c) => c,
            Stop::Signalled(s) => 128 + s,
        }
    }
}

/// Runs the daemons until one exits or a stop signal arrives; returns the init's exit code.
pub fn run(config: &InitConfig) -> Result<i32, InitError> {
    claim_signals()?;
    let set = handled_set();
    // SAFETY: prctl with integer arguments. Failure only loses orphan reaping outside PID 1.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }

    // pid (= pgid) -> name of each live daemon.
    let mut live: BTreeMap<libc::pid_t, String> = BTreeMap::new();
    let mut groups: Vec<libc::pid_t> = Vec::new();
    let mut stop: Option<Stop> = None;
    let mut term_sent_at: Option<Instant> = None;
    let mut kill_sent_at: Option<Instant> = None;
    let stop_signals = forwarded_set();

    for d in &config.daemons {
        // A stop asked for while we start: start nothing more, stop what already runs.
        if let Some(sig) = wait_signal(&stop_signals, Duration::ZERO) {
            forward_stop(sig, &groups, &mut stop, &mut term_sent_at);
            break;
        }
        let mut cmd = Command::new(&d.argv[0]);
        cmd.args(&d.argv[1..]).process_group(0);
        // SAFETY: the closure makes only async-signal-safe calls.
        unsafe {
            cmd.pre_exec(reset_signals_for_exec);
        }
        match cmd.spawn() {
            Ok(child) => {
                let Ok(pid) = libc::pid_t::try_from(child.id()) else {
                    continue;
                };
                tracing::info!(daemon = %d.name, pid, "started");
                live.insert(pid, d.name.clone());
                groups.push(pid);
                // The Child handle is dropped: reaping is done with waitpid(-1) below.
            }
            Err(e) => {
                tracing::error!(daemon = %d.name, program = %d.argv[0], "cannot start: {e}");
                let code = if e.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    126
                };
                stop = Some(Stop::SpawnFailed(code));
                begin_stop(&groups, &mut term_sent_at);
                break;
            }
        }
    }

    loop {
        let (reaped, none_left) = reap_all();
        for (pid, code) in reaped {
            let Some(name) = live.remove(&pid) else {
                continue; // an orphaned grandchild, reaped so it does not linger as a zombie
            };
            if stop.is_none() {
                tracing::error!(daemon = %name, code, "exited; stopping the bundle (fail closed)");
                stop = Some(Stop::DaemonExited(code));
                begin_stop(&groups, &mut term_sent_at);
            } else {
                tracing::info!(daemon = %name, code, "stopped");
            }
        }
        if stop.is_some() && live.is_empty() {
            if none_left {
                break;
            }
            // Every daemon is gone but helpers they spawned linger: no grace for those.
            if kill_sent_at.is_none() {
                kill_groups(&groups, &mut kill_sent_at);
            }
        }
        if kill_sent_at.is_some_and(|t| t.elapsed() >= KILL_WAIT) {
            tracing::error!("children still present after SIGKILL; exiting anyway");
            break;
        }
        if let (Some(t), None) = (term_sent_at, kill_sent_at) {
            if t.elapsed() >= config.stop_timeout {
                tracing::warn!(
                    "daemons still running {:?} after SIGTERM: sending SIGKILL",
                    config.stop_timeout
                );
                kill_groups(&groups, &mut kill_sent_at);
            }
        }

        // Sleep until a signal arrives, bounded by the next deadline.
        let timeout = match (term_sent_at, kill_sent_at) {
            (Some(t), None) => config.stop_timeout.saturating_sub(t.elapsed()),
            (_, Some(_)) => Duration::from_millis(50),
            (None, None) => Duration::from_secs(1),
        };
        if let Some(sig) = wait_signal(&set, timeout.max(Duration::from_millis(1))) {
            if FORWARDED.contains(&sig) {
                forward_stop(sig, &groups, &mut stop, &mut term_sent_at);
            }
            // SIGCHLD: loop around and reap.
        }
    }
    Ok(stop.map_or(1, Stop::exit_code))
}

/// Forwards a stop signal to every daemon group. The first stop decides the exit code and
/// starts the SIGKILL clock; later signals are forwarded too (a second SIGINT still reaches a
/// daemon that wants it).
fn forward_stop(
    sig: libc::c_int,
    groups: &[libc::pid_t],
    stop: &mut Option<Stop>,
    term_sent_at: &mut Option<Instant>,
) {
    // Forward before logging: nothing may stand between a stop signal and the daemons, not
    // even a slow or broken log pipe.
    for &g in groups {
        signal_group(g, sig);
    }
    tracing::info!("received {}, stopping daemons", signal_name(sig));
    if stop.is_none() {
        *stop = Some(Stop::Signalled(sig));
        *term_sent_at = Some(Instant::now());
    }
}

fn kill_groups(groups: &[libc::pid_t], kill_sent_at: &mut Option<Instant>) {
    for &g in groups {
        signal_group(g, libc::SIGKILL);
    }
    *kill_sent_at = Some(Instant::now());
}

fn begin_stop(groups: &[libc::pid_t], term_sent_at: &mut Option<Instant>) {
    for &g in groups {
        signal_group(g, libc::SIGTERM);
    }
    *term_sent_at = Some(Instant::now());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_list_parsing() {
        assert_eq!(
            parse_daemon_list("egress, git-gate,,").unwrap(),
            ["egress", "git-gate"]
        );
        assert!(matches!(
            parse_daemon_list(" , "),
            Err(InitError::NoDaemons)
        ));
        assert!(matches!(
            parse_daemon_list("egress,../x"),
            Err(InitError::BadName { .. })
        ));
        assert!(matches!(
            parse_daemon_list("egress,egress"),
            Err(InitError::Duplicate { .. })
        ));
    }

    #[test]
    fn argv_files_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ok.args.json"), r#"["/bin/true","-x"]"#).unwrap();
        std::fs::write(dir.path().join("empty.args.json"), "[]").unwrap();
        std::fs::write(dir.path().join("obj.args.json"), r#"{"a":1}"#).unwrap();
        std::fs::write(dir.path().join("num.args.json"), "[1]").unwrap();
        assert_eq!(read_argv(dir.path(), "ok").unwrap(), ["/bin/true", "-x"]);
        for bad in ["empty", "obj", "num"] {
            assert!(
                matches!(read_argv(dir.path(), bad), Err(InitError::BadArgs { .. })),
                "{bad}"
            );
        }
        let err = read_argv(dir.path(), "missing").unwrap_err();
        assert!(err.to_string().contains("missing.args.json"), "{err}");
    }

    #[test]
    fn exit_codes_fail_closed() {
        assert_eq!(Stop::DaemonExited(0).exit_code(), 1);
        assert_eq!(Stop::DaemonExited(3).exit_code(), 3);
        assert_eq!(Stop::Signalled(libc::SIGTERM).exit_code(), 143);
        assert_eq!(Stop::SpawnFailed(127).exit_code(), 127);
    }
}
