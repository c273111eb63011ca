//! The one place that spawns engine processes (`docker`, `docker compose`, `smolvm`).
//!
//! Backends describe a command as a [`ProcessSpec`] value; tests assert on those values through
//! the test-only `RecordingRunner`, and [`RealRunner`] is the only code that turns them into processes.
//! Secret values travel only in [`ProcessSpec::secret_env`]: they reach the child's environment
//! and are redacted everywhere they could be printed (argv stays secret-free by construction).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
#[cfg(test)]
use std::sync::{Arc, Mutex};

use crate::secret::Secret;

/// A command to run: program, argv, extra environment and optional stdin bytes.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ProcessSpec {
    pub(crate) program: String,
    pub args: Vec<String>,
    /// Plain variables added to the inherited environment (shown by `Display`).
    pub env: BTreeMap<String, String>,
    /// Secret variables added to the inherited environment (always redacted).
    pub(crate) secret_env: BTreeMap<String, Secret>,
    pub cwd: Option<PathBuf>,
    /// Bytes written to the child's stdin, which is then closed.
    pub stdin: Option<Vec<u8>>,
}

impl ProcessSpec {
    pub fn new(program: impl Into<String>) -> Self {
        ProcessSpec {
            program: program.into(),
            ..ProcessSpec::default()
        }
    }

    #[must_use]
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    #[must_use]
    pub fn args<I, S>(mut self, it: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(it.into_iter().map(Into::into));
        self
    }

    #[must_use]
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }

    #[must_use]
    pub(crate) fn secret_env(mut self, k: impl Into<String>, v: Secret) -> Self {
        self.secret_env.insert(k.into(), v);
        self
    }

    #[must_use]
    pub fn stdin(mut self, bytes: Vec<u8>) -> Self {
        self.stdin = Some(bytes);
        self
    }

    #[must_use]
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// The argv as one vector (`program` first), handy for assertions.
    pub fn argv(&self) -> Vec<&str> {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect()
    }
}

/// Quotes `s` for a POSIX shell when it contains anything beyond a conservative safe set.
pub fn shell_escape(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '_' | '-' | '.' | '/' | ':' | '@' | '%' | '+' | '=' | ',')
        });
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl fmt::Display for ProcessSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.env {
            write!(f, "{}={} ", shell_escape(k), shell_escape(v))?;
        }
        for k in self.secret_env.keys() {
            write!(f, "{}=<redacted> ", shell_escape(k))?;
        }
        f.write_str(&shell_escape(&self.program))?;
        for a in &self.args {
            write!(f, " {}", shell_escape(a))?;
        }
        Ok(())
    }
}

impl fmt::Debug for ProcessSpec {
    // stdin may carry credentials (e.g. `--password-stdin`): only its length is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessSpec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &self.env)
            .field("secret_env", &self.secret_env)
            .field("cwd", &self.cwd)
            .field("stdin_len", &self.stdin.as_ref().map(Vec::len))
            .finish()
    }
}

/// What a captured run produced.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Output {
    /// Exit code, or 128 + signal number when the child was killed by a signal.
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    /// A successful result with the given stdout (for fakes and tests).
    pub fn ok(stdout: impl Into<Vec<u8>>) -> Self {
        Output {
            code: 0,
            stdout: stdout.into(),
            stderr: Vec::new(),
        }
    }

    /// A failed result with the given code and stderr (for fakes and tests).
    pub fn failed(code: i32, stderr: impl Into<Vec<u8>>) -> Self {
        Output {
            code,
            stdout: Vec::new(),
            stderr: stderr.into(),
        }
    }

    pub fn success(&self) -> bool {
        self.code == 0
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Why a process could not be run (or, for [`Runner::run_checked`], why it failed).
#[derive(thiserror::Error, Debug)]
pub enum RunError {
    #[error("`{program}` was not found; {}", install_hint(.program))]
    NotFound { program: String },
    #[error(
        "could not run `{program}`: {source}; check that it is executable and the working directory exists"
    )]
    Io {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed with exit code {code}: {stderr}")]
    Failed {
        /// The redacted, shell-escaped command line.
        command: String,
        code: i32,
        /// The last lines of the child's stderr.
        stderr: String,
    },
}

fn install_hint(program: &str) -> String {
    let base = program.rsplit('/').next().unwrap_or(program);
    match base {
        "docker" | "docker-compose" => "install Docker or put `docker` on PATH".to_string(),
        "smolvm" => "install smolvm or put `smolvm` on PATH".to_string(),
        other => format!("install it or put `{other}` on PATH"),
    }
}

/// Keeps the tail of a child's stderr for an error message.
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let start = lines.len().saturating_sub(5);
    lines[start..].join(" | ")
}

/// Runs [`ProcessSpec`]s. Object safe; pass `&dyn Runner` through backends.
pub trait Runner: Send + Sync {
    /// Runs to completion with stdout and stderr captured.
    fn run(&self, spec: &ProcessSpec) -> Result<Output, RunError>;
    /// Runs to completion with both its stdout and stderr on this process's stderr (build
    /// progress, never a result, so a `--json` stdout stays clean); stdin is null unless
    /// `spec.stdin` is set. Returns the exit code (128 + signal when killed).
    fn run_streaming(&self, spec: &ProcessSpec) -> Result<i32, RunError>;
    /// Runs with all stdio inherited (`docker exec -it`). Returns the exit code.
    fn run_interactive(&self, spec: &ProcessSpec) -> Result<i32, RunError>;

    /// [`Runner::run_interactive`] with `watch` (no stdio) running beside it: when `watch`
    /// finishes first with success, the session gets a moment to end by itself and is then
    /// ended; when the session finishes first, `watch` is ended. For a session whose own end
    /// may never come (an exec into a stopped gVisor container), `watch` being what notices.
    fn run_interactive_watched(
        &self,
        spec: &ProcessSpec,
        watch: &ProcessSpec,
    ) -> Result<Watched, RunError> {
        let _ = watch;
        self.run_interactive(spec)
            .map(|code| Watched { code, fired: false })
    }

    /// [`Runner::run`], turning a non-zero exit into [`RunError::Failed`].
    fn run_checked(&self, spec: &ProcessSpec) -> Result<Output, RunError> {
        let out = self.run(spec)?;
        if out.success() {
            Ok(out)
        } else {
            Err(RunError::Failed {
                command: spec.to_string(),
                code: out.code,
                stderr: stderr_tail(&out.stderr),
            })
        }
    }
}

/// How a watched interactive session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watched {
    /// The session's exit code; [`CUT_EXIT`] when it had to be ended.
    pub code: i32,
    /// The watch finished (with success) before the session did.
    pub fired: bool,
}

/// The exit code of a cut session: 128 + SIGKILL, what `docker exec` itself reports when the
/// engine kills the process it ran.
pub const CUT_EXIT: i32 = 128 + 9;
/// How often a watched session's two children are looked at.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// How long a session may take to end by itself once its watch finished, before it is cut.
const CUT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The terminal settings of stdin, when it is a terminal: a session cut by a signal cannot
/// undo its raw mode itself, so they are put back afterwards.
struct TermSettings(Option<libc::termios>);

impl TermSettings {
    fn save() -> TermSettings {
        // SAFETY: tcgetattr writes into the zeroed struct we own; fd 0 may be anything.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::isatty(0) == 1 && libc::tcgetattr(0, &mut t) == 0 {
                TermSettings(Some(t))
            } else {
                TermSettings(None)
            }
        }
    }

    fn restore(&self) {
        if let Some(t) = &self.0 {
            // SAFETY: the settings read from the same descriptor by `save`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, t);
            }
        }
    }
}

/// Spawns real processes. The child's environment is the inherited one plus `env` and
/// `secret_env`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealRunner;

#[derive(Clone, Copy)]
enum Stdio3 {
    Captured,
    Streaming,
    Interactive,
    /// No stdio at all (a watch beside a session).
    Silent,
}

impl RealRunner {
    fn command(spec: &ProcessSpec, mode: Stdio3) -> Command {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args);
        cmd.envs(&spec.env);
        for (k, v) in &spec.secret_env {
            cmd.env(k, v.expose());
        }
        if let Some(dir) = &spec.cwd {
            cmd.current_dir(dir);
        }
        let stdin = if spec.stdin.is_some() {
            Stdio::piped()
        } else if matches!(mode, Stdio3::Interactive) {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        cmd.stdin(stdin);
        match mode {
            Stdio3::Captured => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
            // Progress is never a command's result: it goes to stderr, so stdout stays clean
            // for `--json`.
            Stdio3::Streaming => {
                cmd.stdout(std::io::stderr()).stderr(Stdio::inherit());
            }
            Stdio3::Interactive => {
                cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
            }
            Stdio3::Silent => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        cmd
    }

    fn spawn(spec: &ProcessSpec, mode: Stdio3) -> Result<Child, RunError> {
        tracing::debug!("+ {spec}");
        let mut child = Self::command(spec, mode)
            .spawn()
            .map_err(|e| spawn_error(spec, e))?;
        if let (Some(bytes), Some(mut pipe)) = (&spec.stdin, child.stdin.take()) {
            // A thread, so a child that writes a lot before reading cannot deadlock us.
            let bytes = bytes.clone();
            std::thread::spawn(move || {
                // A child that exits without reading closes the pipe: not our error.
                let _ = pipe.write_all(&bytes);
            });
        }
        Ok(child)
    }
}

fn spawn_error(spec: &ProcessSpec, e: std::io::Error) -> RunError {
    let cwd_ok = spec.cwd.as_ref().is_none_or(|d| d.is_dir());
    if e.kind() == std::io::ErrorKind::NotFound && cwd_ok {
        RunError::NotFound {
            program: spec.program.clone(),
        }
    } else {
        RunError::Io {
            program: spec.program.clone(),
            source: e,
        }
    }
}

/// Exit code, or 128 + signal for a child killed by a signal.
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    }
}

/// Logs how long a finished child ran (`-vv`): with the log's uptime stamps, each engine
/// round trip of a launch shows where it started and how long it took.
fn log_done(spec: &ProcessSpec, started: std::time::Instant, code: i32) {
    tracing::debug!(
        "= {} {} → {code} in {} ms",
        spec.program,
        spec.args.first().map_or("", String::as_str),
        started.elapsed().as_millis()
    );
}

impl Runner for RealRunner {
    fn run(&self, spec: &ProcessSpec) -> Result<Output, RunError> {
        let started = std::time::Instant::now();
        let child = Self::spawn(spec, Stdio3::Captured)?;
        let out = child.wait_with_output().map_err(|e| RunError::Io {
            program: spec.program.clone(),
            source: e,
        })?;
        log_done(spec, started, exit_code(out.status));
        Ok(Output {
            code: exit_code(out.status),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    fn run_streaming(&self, spec: &ProcessSpec) -> Result<i32, RunError> {
        let started = std::time::Instant::now();
        let mut child = Self::spawn(spec, Stdio3::Streaming)?;
        let status = child.wait().map_err(|e| RunError::Io {
            program: spec.program.clone(),
            source: e,
        })?;
        log_done(spec, started, exit_code(status));
        Ok(exit_code(status))
    }

    fn run_interactive(&self, spec: &ProcessSpec) -> Result<i32, RunError> {
        let started = std::time::Instant::now();
        let mut child = Self::spawn(spec, Stdio3::Interactive)?;
        let status = child.wait().map_err(|e| RunError::Io {
            program: spec.program.clone(),
            source: e,
        })?;
        log_done(spec, started, exit_code(status));
        Ok(exit_code(status))
    }

    fn run_interactive_watched(
        &self,
        spec: &ProcessSpec,
        watch: &ProcessSpec,
    ) -> Result<Watched, RunError> {
        let started = std::time::Instant::now();
        let term = TermSettings::save();
        let io = |program: &str| {
            let program = program.to_string();
            move |source| RunError::Io { program, source }
        };
        let mut child = Self::spawn(spec, Stdio3::Interactive)?;
        // A watch that cannot run leaves the session as it would be without one.
        let mut watcher = Self::spawn(watch, Stdio3::Silent)
            .map_err(|e| tracing::warn!("the session runs unwatched: {e}"))
            .ok();
        let mut cut_at: Option<std::time::Instant> = None;
        let outcome = loop {
            if let Some(status) = child.try_wait().map_err(io(&spec.program))? {
                break Watched {
                    code: exit_code(status),
                    fired: cut_at.is_some(),
                };
            }
            if let Some(w) = watcher.as_mut() {
                match w.try_wait().map_err(io(&watch.program))? {
                    Some(status) if status.success() => {
                        cut_at.get_or_insert_with(std::time::Instant::now);
                    }
                    // A watch that failed proves nothing about the session.
                    Some(status) => {
                        tracing::warn!(
                            "the session's watch `{watch}` ended with {}; the session runs unwatched",
                            exit_code(status)
                        );
                        watcher = None;
                    }
                    None => {}
                }
            }
            if cut_at.is_some_and(|t| t.elapsed() >= CUT_GRACE) {
                let _ = child.kill();
                let _ = child.wait();
                term.restore();
                break Watched {
                    code: CUT_EXIT,
                    fired: true,
                };
            }
            std::thread::sleep(WATCH_EVERY);
        };
        if let Some(mut w) = watcher {
            let _ = w.kill();
            let _ = w.wait();
        }
        log_done(spec, started, outcome.code);
        Ok(outcome)
    }
}

/// How a recorded call was made.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Captured,
    Streaming,
    Interactive,
}

#[cfg(test)]
type Answer = dyn Fn(&ProcessSpec) -> Result<Output, RunError> + Send + Sync;

/// A fake runner: records every spec and answers from a closure. Clones share the record.
#[cfg(test)]
#[derive(Clone)]
pub(crate) struct RecordingRunner {
    answer: Arc<Answer>,
    calls: Arc<Mutex<Vec<(Mode, ProcessSpec)>>>,
}

#[cfg(test)]
impl RecordingRunner {
    /// Answers every call with `answer(spec)`.
    pub(crate) fn new(answer: impl Fn(&ProcessSpec) -> Output + Send + Sync + 'static) -> Self {
        Self::fallible(move |spec| Ok(answer(spec)))
    }

    /// Answers with a result, so tests can simulate a missing program or an I/O error.
    pub(crate) fn fallible(
        answer: impl Fn(&ProcessSpec) -> Result<Output, RunError> + Send + Sync + 'static,
    ) -> Self {
        RecordingRunner {
            answer: Arc::new(answer),
            calls: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Answers every call with success and empty output.
    pub(crate) fn succeeding() -> Self {
        Self::new(|_| Output::default())
    }

    /// Every spec run so far, in order.
    pub(crate) fn calls(&self) -> Vec<ProcessSpec> {
        self.calls_with_mode().into_iter().map(|(_, s)| s).collect()
    }

    /// Every spec run so far with the way it was run.
    pub(crate) fn calls_with_mode(&self) -> Vec<(Mode, ProcessSpec)> {
        match self.calls.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn record(&self, mode: Mode, spec: &ProcessSpec) -> Result<Output, RunError> {
        match self.calls.lock() {
            Ok(mut g) => g.push((mode, spec.clone())),
            Err(poisoned) => poisoned.into_inner().push((mode, spec.clone())),
        }
        (self.answer)(spec)
    }
}

#[cfg(test)]
impl fmt::Debug for RecordingRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingRunner")
            .field("calls", &self.calls_with_mode().len())
            .finish()
    }
}

#[cfg(test)]
impl Runner for RecordingRunner {
    fn run(&self, spec: &ProcessSpec) -> Result<Output, RunError> {
        self.record(Mode::Captured, spec)
    }

    fn run_streaming(&self, spec: &ProcessSpec) -> Result<i32, RunError> {
        self.record(Mode::Streaming, spec).map(|o| o.code)
    }

    fn run_interactive(&self, spec: &ProcessSpec) -> Result<i32, RunError> {
        self.record(Mode::Interactive, spec).map(|o| o.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> ProcessSpec {
        ProcessSpec::new("sh").arg("-c").arg(script)
    }

    #[test]
    fn display_escapes_args_and_redacts_secrets() {
        let spec = ProcessSpec::new("docker")
            .args(["run", "--name", "a b", "it's"])
            .env("PLAIN", "v 1")
            .secret_env("TOKEN", Secret::new("hunter2-secret"));
        let shown = spec.to_string();
        assert_eq!(
            shown,
            r"PLAIN='v 1' TOKEN=<redacted> docker run --name 'a b' 'it'\''s'"
        );
        assert!(!format!("{spec:?}").contains("hunter2"));
    }

    #[test]
    fn shell_escape_round_trips_through_sh() {
        for s in ["", "plain", "a b", "it's", "$HOME", "a\"b", "x;y", "*"] {
            let out = RealRunner
                .run(&sh(&format!("printf %s {}", shell_escape(s))))
                .unwrap();
            assert_eq!(out.stdout_str(), s, "escaping {s:?}");
        }
    }

    #[test]
    fn real_runner_captures_output_code_and_env() {
        let spec = sh("printf '%s|%s' \"$PLAIN\" \"$TOKEN\"; echo err >&2; exit 3")
            .env("PLAIN", "p")
            .secret_env("TOKEN", Secret::new("s3"));
        let out = RealRunner.run(&spec).unwrap();
        assert_eq!(out.code, 3);
        assert!(!out.success());
        assert_eq!(out.stdout_str(), "p|s3");
        assert_eq!(out.stderr_str(), "err\n");
    }

    /// Build progress must not land on stdout, where `doctor --json` and the like print their
    /// result: this test runs itself again as a child that streams a command, and reads the
    /// child's two streams.
    #[test]
    fn streamed_output_goes_to_stderr_not_stdout() {
        if std::env::var_os("BB_TEST_STREAM_CHILD").is_some() {
            let spec = ProcessSpec::new("sh").args(["-c", "echo streamed-progress-line"]);
            assert_eq!(RealRunner.run_streaming(&spec).unwrap(), 0);
            return;
        }
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "runner::tests::streamed_output_goes_to_stderr_not_stdout",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("BB_TEST_STREAM_CHILD", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            stdout.contains("1 passed"),
            "the child ran the test: {stdout}"
        );
        assert!(!stdout.contains("streamed-progress-line"), "{stdout}");
        assert!(stderr.contains("streamed-progress-line"), "{stderr}");
    }

    #[test]
    fn real_runner_inherits_the_parent_environment() {
        // PATH is always set for the test process; the child must see it unchanged.
        let path = std::env::var("PATH").unwrap_or_default();
        let out = RealRunner
            .run(&sh("printf %s \"$PATH\"").env("X", "1"))
            .unwrap();
        assert_eq!(out.stdout_str(), path);
    }

    #[test]
    fn real_runner_feeds_stdin_and_honours_cwd() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![b'x'; 1 << 20];
        let out = RealRunner
            .run(&sh("wc -c; pwd").stdin(big).cwd(dir.path()))
            .unwrap();
        let text = out.stdout_str();
        let mut lines = text.lines();
        assert_eq!(lines.next().map(str::trim), Some("1048576"));
        let pwd = PathBuf::from(lines.next().unwrap_or_default());
        assert_eq!(
            pwd.canonicalize().unwrap(),
            dir.path().canonicalize().unwrap()
        );
    }

    #[test]
    fn a_watched_session_is_cut_when_its_watch_finishes_and_ends_it_otherwise() {
        let t = std::time::Instant::now();
        let w = RealRunner
            .run_interactive_watched(&sh("sleep 30"), &sh("sleep 0.2"))
            .unwrap();
        assert_eq!(
            w,
            Watched {
                code: CUT_EXIT,
                fired: true
            }
        );
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
        // The session ends first: its own code, and the watch does not outlive it.
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("watch-ran-on");
        let watch = sh(&format!("sleep 5; touch {}", mark.display()));
        let w = RealRunner
            .run_interactive_watched(&sh("exit 3"), &watch)
            .unwrap();
        assert_eq!(
            w,
            Watched {
                code: 3,
                fired: false
            }
        );
        // A watch that fails (e.g. no such container) does not cut the session.
        let w = RealRunner
            .run_interactive_watched(&sh("sleep 1.5; exit 4"), &sh("exit 1"))
            .unwrap();
        assert_eq!(
            w,
            Watched {
                code: 4,
                fired: false
            }
        );
        // A session that ends by itself within the grace keeps its own code.
        let w = RealRunner
            .run_interactive_watched(&sh("sleep 0.5; exit 5"), &sh("true"))
            .unwrap();
        assert_eq!(
            w,
            Watched {
                code: 5,
                fired: true
            }
        );
        std::thread::sleep(std::time::Duration::from_secs(6));
        assert!(!mark.exists(), "the watch outlived its session");
    }

    #[test]
    fn signal_death_is_128_plus_signal() {
        let out = RealRunner.run(&sh("kill -TERM $$")).unwrap();
        assert_eq!(out.code, 128 + libc::SIGTERM);
        assert_eq!(RealRunner.run_streaming(&sh("kill -KILL $$")).unwrap(), 137);
    }

    #[test]
    fn streaming_has_null_stdin_by_default() {
        // `read` fails at EOF immediately instead of waiting on the test's stdin.
        assert_eq!(RealRunner.run_streaming(&sh("read x; exit $?")).unwrap(), 1);
        assert_eq!(
            RealRunner
                .run_streaming(&sh("read x; test \"$x\" = hi").stdin(b"hi\n".to_vec()))
                .unwrap(),
            0
        );
    }

    #[test]
    fn missing_program_says_what_to_do() {
        let err = RealRunner
            .run(&ProcessSpec::new("bot-bottle-no-such-program-xyz"))
            .unwrap_err();
        assert!(matches!(err, RunError::NotFound { .. }));
        assert!(
            err.to_string()
                .contains("put `bot-bottle-no-such-program-xyz` on PATH")
        );
        let docker = RunError::NotFound {
            program: "docker".into(),
        };
        assert!(
            docker
                .to_string()
                .contains("install Docker or put `docker` on PATH")
        );
    }

    #[test]
    fn missing_cwd_is_an_io_error_not_a_missing_program() {
        let err = RealRunner
            .run(&sh("true").cwd("/nonexistent/bot-bottle-dir"))
            .unwrap_err();
        assert!(matches!(err, RunError::Io { .. }), "{err}");
    }

    #[test]
    fn run_checked_reports_redacted_command_and_stderr() {
        let spec = sh("echo boom >&2; exit 2").secret_env("K", Secret::new("topsecret"));
        let err = RealRunner.run_checked(&spec).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("exit code 2") && msg.contains("boom"), "{msg}");
        assert!(!msg.contains("topsecret"));
    }

    #[test]
    fn recording_runner_records_in_order_and_answers() {
        let rec = RecordingRunner::new(|s| {
            if s.args.first().map(String::as_str) == Some("fail") {
                Output::failed(7, "nope")
            } else {
                Output::ok(format!("ran {}", s.program))
            }
        });
        let r: &dyn Runner = &rec;
        assert_eq!(r.run(&ProcessSpec::new("a")).unwrap().stdout_str(), "ran a");
        assert_eq!(
            r.run_streaming(&ProcessSpec::new("b").arg("fail")).unwrap(),
            7
        );
        assert_eq!(r.run_interactive(&ProcessSpec::new("c")).unwrap(), 0);
        let calls = rec.calls_with_mode();
        let seen: Vec<(Mode, &str)> = calls
            .iter()
            .map(|(m, s)| (*m, s.program.as_str()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (Mode::Captured, "a"),
                (Mode::Streaming, "b"),
                (Mode::Interactive, "c")
            ]
        );
        assert_eq!(rec.calls().len(), 3);
    }
}
