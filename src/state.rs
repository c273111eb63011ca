//! The per-bottle state directory `<root>/state/<id>/`: metadata, rendered configs, the
//! transcript snapshot and the `.preserve` marker.
//!
//! Everything a launch writes to disk goes through [`StateDir`], so permissions (0700 dirs,
//! 0600 files unless a container must read them) and the free-space check live in one place.
//! `cleanup` walks [`list`] to find orphaned directories after a crash.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Mode of files written with `mode: None`.
pub(crate) const DEFAULT_FILE_MODE: u32 = 0o600;
/// Mode of the state directories.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Metadata file name inside a state directory.
pub(crate) const METADATA_FILE: &str = "metadata.json";
/// Marker that keeps a state directory after the session (crash, approved image change).
pub(crate) const PRESERVE_MARKER: &str = ".preserve";
/// Held (an `flock`) by the `start` that owns the bottle while its session runs, so it ends
/// with that process however it ends.
pub(crate) const SESSION_LOCK: &str = ".session";
/// Left by an operator's stop (the dashboard) for the owning `start` to report.
pub(crate) const STOP_MARKER: &str = ".stop-requested";
/// Transcript snapshot directory name.
pub(crate) const TRANSCRIPT_DIR: &str = "transcript";
/// Free space a launch needs on the state filesystem before anything starts.
pub(crate) const MIN_FREE_BYTES: u64 = 16 * 1024 * 1024;

/// What `metadata.json` records about a bottle, enough for `resume`, `list` and `cleanup`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub identity: String,
    pub agent: String,
    pub bottle: String,
    pub cwd: PathBuf,
    pub copy_cwd: bool,
    /// RFC 3339 UTC timestamp of the plan's start time, see [`Metadata::rfc3339`].
    pub started_at: String,
    pub compose_project: String,
    /// `docker` or `smolmachines`.
    pub backend: String,
}

impl Metadata {
    /// Unix seconds in the format `started_at` uses.
    pub(crate) fn rfc3339(unix_secs: u64) -> String {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs);
        humantime::format_rfc3339_seconds(t).to_string()
    }
}

#[derive(thiserror::Error, Debug)]
pub enum StateError {
    #[error(
        "invalid bottle identity `{id}`; identities use lowercase letters, digits, `-`, `_` and `.`"
    )]
    InvalidId { id: String },
    #[error("invalid state file name `{name}`; use a relative path without `..`")]
    InvalidName { name: String },
    #[error("state directory {} already exists; use `resume {id}` or run `bot-bottle cleanup`", .path.display())]
    Exists { id: String, path: PathBuf },
    #[error("no state for `{id}` at {}; see `bot-bottle list active`", .path.display())]
    NotFound { id: String, path: PathBuf },
    #[error("only {free_mib} MiB free on the filesystem of {} (at least {need_mib} MiB needed); free disk space or point BOT_BOTTLE_HOME elsewhere", .path.display())]
    NoSpace {
        path: PathBuf,
        free_mib: u64,
        need_mib: u64,
    },
    #[error("cannot write state at {}: {source}; check permissions and free space", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt metadata at {}: {source}; remove the directory with `bot-bottle cleanup`", .path.display())]
    Metadata {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `<root>/state`.
pub(crate) fn state_root(root: &Path) -> PathBuf {
    root.join("state")
}

/// Identities become directory and container names: keep them to a safe alphabet.
pub(crate) fn validate_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidId { id: id.to_string() })
    }
}

fn mkdir_private(path: &Path) -> Result<(), StateError> {
    match fs::DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Free bytes available to this user on the filesystem holding `path`.
pub(crate) fn free_bytes(path: &Path) -> Result<u64, StateError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| StateError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains NUL"),
    })?;
    // SAFETY: `c` is a valid NUL-terminated string and `st` a zeroed out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io_err(path)(std::io::Error::last_os_error()));
    }
    #[allow(clippy::unnecessary_cast)] // field widths differ between targets
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Checks that `dir` (which must exist) has `need` bytes free and accepts a write.
pub(crate) fn check_writable(dir: &Path, need: u64) -> Result<(), StateError> {
    let free = free_bytes(dir)?;
    if free < need {
        return Err(StateError::NoSpace {
            path: dir.to_path_buf(),
            free_mib: free / (1024 * 1024),
            need_mib: need.div_ceil(1024 * 1024),
        });
    }
    // A real write catches read-only mounts and quotas that statvfs does not show.
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    let res = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&probe)
        .and_then(|mut f| f.write_all(&[0u8; 4096]).and_then(|()| f.sync_all()));
    let _ = fs::remove_file(&probe);
    res.map_err(io_err(dir))
}

/// Validates a relative file name inside a state directory.
fn checked_name(name: &str) -> Result<&Path, StateError> {
    let p = Path::new(name);
    let ok = !name.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(p)
    } else {
        Err(StateError::InvalidName {
            name: name.to_string(),
        })
    }
}

/// Writes `contents` to `path` atomically (temp file + rename) with exactly `mode`.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let res = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode; set it exactly (also widens to e.g. 0644).
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map_err(io_err(path))
}

/// One bottle's state directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateDir {
    id: String,
    path: PathBuf,
}

impl StateDir {
    /// Creates `<root>/state/<id>/` (mode 0700) after checking free space and writability.
    /// Fails if it already exists, so a preserved state is never overwritten.
    pub fn create(root: &Path, id: &str) -> Result<StateDir, StateError> {
        validate_id(id)?;
        fs::create_dir_all(root).map_err(io_err(root))?;
        let states = state_root(root);
        mkdir_private(&states)?;
        check_writable(&states, MIN_FREE_BYTES)?;
        let path = states.join(id);
        match fs::DirBuilder::new().mode(DIR_MODE).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StateError::Exists {
                    id: id.to_string(),
                    path,
                });
            }
            Err(e) => return Err(io_err(&path)(e)),
        }
        // DirBuilder's mode is filtered by the umask; make it exact.
        fs::set_permissions(&path, fs::Permissions::from_mode(DIR_MODE)).map_err(io_err(&path))?;
        Ok(StateDir {
            id: id.to_string(),
            path,
        })
    }

    /// The handle of `<root>/state/<id>` without touching the disk: the directory may not
    /// exist yet (a launch names it before creating it).
    pub(crate) fn planned(root: &Path, id: &str) -> StateDir {
        StateDir {
            id: id.to_string(),
            path: state_root(root).join(id),
        }
    }

    /// Opens an existing state directory (for `resume` and teardown).
    pub fn open(root: &Path, id: &str) -> Result<StateDir, StateError> {
        validate_id(id)?;
        let path = state_root(root).join(id);
        if !path.is_dir() {
            return Err(StateError::NotFound {
                id: id.to_string(),
                path,
            });
        }
        Ok(StateDir {
            id: id.to_string(),
            path,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `name` (a relative path; parents are created 0700) atomically with `mode`,
    /// 0600 when `None`. Returns the absolute path. Never pass secret values here.
    pub(crate) fn write_file(
        &self,
        name: &str,
        contents: impl AsRef<[u8]>,
        mode: Option<u32>,
    ) -> Result<PathBuf, StateError> {
        let rel = checked_name(name)?;
        let path = self.path.join(rel);
        if let Some(parent) = rel.parent() {
            let mut dir = self.path.clone();
            for c in parent.components() {
                dir.push(c);
                mkdir_private(&dir)?;
            }
        }
        write_atomic(&path, contents.as_ref(), mode.unwrap_or(DEFAULT_FILE_MODE))?;
        Ok(path)
    }

    /// Writes `metadata.json` (0600).
    pub fn write_metadata(&self, meta: &Metadata) -> Result<PathBuf, StateError> {
        let mut json = serde_json::to_vec_pretty(meta).map_err(|source| StateError::Metadata {
            path: self.path.join(METADATA_FILE),
            source,
        })?;
        json.push(b'\n');
        self.write_file(METADATA_FILE, json, None)
    }

    /// Reads `metadata.json`.
    pub fn metadata(&self) -> Result<Metadata, StateError> {
        read_metadata(&self.path.join(METADATA_FILE))
    }

    /// Marks the state to be kept after the session.
    pub fn preserve(&self) -> Result<(), StateError> {
        write_atomic(&self.path.join(PRESERVE_MARKER), b"", DEFAULT_FILE_MODE)
    }

    /// Drops the preserve marker (a resumed bottle that ended cleanly).
    pub(crate) fn unpreserve(&self) -> Result<(), StateError> {
        match fs::remove_file(self.path.join(PRESERVE_MARKER)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&self.path)(e)),
        }
    }

    /// Replaces the subdirectory `name` with the contents of a tar stream whose entries all
    /// sit under one top directory (what `docker cp <container>:<dir> -` prints); that top
    /// directory becomes `name`. Only regular files and directories are kept, each path
    /// checked like [`StateDir::write_file`]'s: a stream can never write outside `name`.
    pub(crate) fn replace_from_tar(
        &self,
        name: &str,
        tar_bytes: &[u8],
    ) -> Result<PathBuf, StateError> {
        let rel = checked_name(name)?.to_path_buf();
        let dest = self.path.join(&rel);
        match fs::remove_dir_all(&dest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&dest)(e)),
        }
        mkdir_private(&dest)?;
        let bad = |what: &str| StateError::InvalidName {
            name: format!("{name}: {what}"),
        };
        let mut archive = tar::Archive::new(tar_bytes);
        for entry in archive.entries().map_err(io_err(&dest))? {
            let mut entry = entry.map_err(io_err(&dest))?;
            let path = entry.path().map_err(io_err(&dest))?.into_owned();
            // Strip the top directory; the entry for the top directory itself is skipped.
            let inner: PathBuf = path.components().skip(1).collect();
            if inner.as_os_str().is_empty() {
                continue;
            }
            let inner_str = inner.to_string_lossy().to_string();
            let inner_rel = checked_name(&inner_str).map_err(|_| bad(&inner_str))?;
            let target = rel.join(inner_rel);
            match entry.header().entry_type() {
                tar::EntryType::Directory => {
                    let mut dir = self.path.clone();
                    for c in target.components() {
                        dir.push(c);
                        mkdir_private(&dir)?;
                    }
                }
                tar::EntryType::Regular => {
                    let mut data = Vec::new();
                    std::io::Read::read_to_end(&mut entry, &mut data).map_err(io_err(&dest))?;
                    self.write_file(&target.to_string_lossy(), data, None)?;
                }
                // Links and devices mean nothing in a snapshot and could point anywhere.
                _ => {}
            }
        }
        Ok(dest)
    }

    pub(crate) fn is_preserved(&self) -> bool {
        self.path.join(PRESERVE_MARKER).exists()
    }

    /// Take the session lock for this process (released when the guard drops or the process
    /// ends). Fails when another process holds it.
    pub(crate) fn hold_session(&self) -> Result<SessionLock, StateError> {
        let p = self.path.join(SESSION_LOCK);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(DEFAULT_FILE_MODE)
            .open(&p)
            .map_err(io_err(&p))?;
        flock(&file, libc::LOCK_EX | libc::LOCK_NB).map_err(io_err(&p))?;
        Ok(SessionLock { _file: file })
    }

    /// Whether a `start` holds the session lock: its session is running, and stopping the
    /// bottle is that process's to finish.
    pub(crate) fn session_running(&self) -> bool {
        let Ok(file) = fs::File::open(self.path.join(SESSION_LOCK)) else {
            return false;
        };
        // Taken here, the lock is free; the file closes (and the lock goes) on return.
        flock(&file, libc::LOCK_SH | libc::LOCK_NB).is_err()
    }

    /// Record that the operator stopped the bottle.
    pub(crate) fn request_stop(&self) -> Result<(), StateError> {
        write_atomic(&self.path.join(STOP_MARKER), b"", DEFAULT_FILE_MODE)
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.path.join(STOP_MARKER).exists()
    }

    /// Forget an earlier stop (a resumed bottle starts a new session).
    pub(crate) fn clear_stop(&self) {
        let _ = fs::remove_file(self.path.join(STOP_MARKER));
    }

    /// Where the transcript snapshot goes (`<state>/transcript`). Not created here: `docker cp`
    /// creates it, and its absence means no snapshot was taken.
    pub(crate) fn transcript_dir(&self) -> PathBuf {
        self.path.join(TRANSCRIPT_DIR)
    }

    /// Removes the directory unless it carries the `.preserve` marker. Returns whether it was
    /// removed; an already missing directory counts as removed (teardown is idempotent).
    pub(crate) fn remove_unless_preserved(&self) -> Result<bool, StateError> {
        if self.is_preserved() {
            return Ok(false);
        }
        self.remove()?;
        Ok(true)
    }

    /// Removes the directory unconditionally (`cleanup` of a finished bottle).
    pub(crate) fn remove(&self) -> Result<(), StateError> {
        match fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&self.path)(e)),
        }
    }
}

/// The session lock of a state dir ([`StateDir::hold_session`]).
#[derive(Debug)]
pub(crate) struct SessionLock {
    _file: fs::File,
}

fn flock(file: &fs::File, op: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor owned by `file`, which outlives the call.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn read_metadata(path: &Path) -> Result<Metadata, StateError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|source| StateError::Metadata {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads `<root>/state/<id>/metadata.json`.
pub(crate) fn load_metadata(root: &Path, id: &str) -> Result<Metadata, StateError> {
    StateDir::open(root, id)?.metadata()
}

/// A state directory found on disk.
#[derive(Debug)]
pub(crate) struct StateEntry {
    pub id: String,
    pub path: PathBuf,
    /// `None` when `metadata.json` is missing or unreadable (a launch killed early).
    pub metadata: Option<Metadata>,
    pub preserved: bool,
}

impl StateEntry {
    pub(crate) fn dir(&self) -> StateDir {
        StateDir {
            id: self.id.clone(),
            path: self.path.clone(),
        }
    }
}

/// Every state directory under `<root>/state`, sorted by id. A missing state root is empty.
/// Entries with names that are not valid identities are skipped (never ours).
pub(crate) fn list(root: &Path) -> Result<Vec<StateEntry>, StateError> {
    let states = state_root(root);
    let rd = match fs::read_dir(&states) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&states)(e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(io_err(&states))?;
        let Ok(id) = entry.file_name().into_string() else {
            continue;
        };
        if validate_id(&id).is_err() || !entry.path().is_dir() {
            continue;
        }
        let path = entry.path();
        let metadata = read_metadata(&path.join(METADATA_FILE)).ok();
        let preserved = path.join(PRESERVE_MARKER).exists();
        out.push(StateEntry {
            id,
            path,
            metadata,
            preserved,
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_lock_says_whether_an_owner_runs_and_the_stop_marker_is_kept_apart() {
        let root = tempfile::tempdir().unwrap();
        let s = StateDir::create(root.path(), "own-1").unwrap();
        assert!(!s.session_running(), "no lock file yet");
        let lock = s.hold_session().unwrap();
        assert!(s.session_running());
        assert!(
            !s.session_running() || s.hold_session().is_err(),
            "one owner"
        );
        drop(lock);
        assert!(!s.session_running(), "released with the guard");
        // A process that ends (here: a child holding the lock) releases it too.
        // `-o`: the lock stays with `flock` itself, not with the `sleep` it runs.
        let mut child = std::process::Command::new("flock")
            .arg("-o")
            .arg(s.path().join(SESSION_LOCK))
            .args(["sleep", "30"])
            .spawn()
            .unwrap();
        let t = std::time::Instant::now();
        while !s.session_running() && t.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(s.session_running(), "another process holds it");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!s.session_running());

        assert!(!s.stop_requested());
        s.request_stop().unwrap();
        assert!(s.stop_requested());
        s.clear_stop();
        assert!(!s.stop_requested());
    }

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn meta(id: &str) -> Metadata {
        Metadata {
            identity: id.to_string(),
            agent: "dev".into(),
            bottle: "base".into(),
            cwd: PathBuf::from("/work/project"),
            copy_cwd: true,
            started_at: Metadata::rfc3339(1_800_000_000),
            compose_project: format!("bot-bottle-{id}"),
            backend: "docker".into(),
        }
    }

    #[test]
    fn create_makes_private_dirs_and_refuses_to_overwrite() {
        let root = tempfile::tempdir().unwrap();
        let sd = StateDir::create(root.path(), "dev-a1b2").unwrap();
        assert_eq!(sd.path(), root.path().join("state/dev-a1b2"));
        assert_eq!(mode_of(sd.path()), 0o700);
        assert_eq!(mode_of(&root.path().join("state")), 0o700);
        let again = StateDir::create(root.path(), "dev-a1b2").unwrap_err();
        assert!(matches!(again, StateError::Exists { .. }), "{again}");
    }

    #[test]
    fn ids_that_could_escape_are_rejected() {
        let root = tempfile::tempdir().unwrap();
        for bad in ["", "../x", "a/b", "UPPER", "-lead", ".hidden", "a b"] {
            assert!(
                matches!(
                    StateDir::create(root.path(), bad),
                    Err(StateError::InvalidId { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn write_file_modes_nested_names_and_traversal() {
        let root = tempfile::tempdir().unwrap();
        let sd = StateDir::create(root.path(), "x1").unwrap();
        let p = sd
            .write_file("compose.yaml", "services: {}\n", None)
            .unwrap();
        assert_eq!(mode_of(&p), 0o600);
        assert_eq!(fs::read_to_string(&p).unwrap(), "services: {}\n");
        let p = sd
            .write_file("egress/routes.json", b"{\"routes\": []}", Some(0o644))
            .unwrap();
        assert_eq!(mode_of(&p), 0o644);
        assert_eq!(mode_of(&sd.path().join("egress")), 0o700);
        // overwrite keeps the new content and mode
        let p = sd.write_file("compose.yaml", "v2", Some(0o640)).unwrap();
        assert_eq!(
            (fs::read_to_string(&p).unwrap().as_str(), mode_of(&p)),
            ("v2", 0o640)
        );
        for bad in ["../escape", "/etc/passwd", "a/../../b", "", "./x"] {
            assert!(
                matches!(
                    sd.write_file(bad, "x", None),
                    Err(StateError::InvalidName { .. })
                ),
                "{bad:?}"
            );
        }
        // no temp files left behind
        let names: Vec<_> = fs::read_dir(sd.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
    }

    #[test]
    fn metadata_round_trips_and_loads_by_id() {
        let root = tempfile::tempdir().unwrap();
        let sd = StateDir::create(root.path(), "dev-1").unwrap();
        let m = meta("dev-1");
        let p = sd.write_metadata(&m).unwrap();
        assert_eq!(mode_of(&p), 0o600);
        assert_eq!(load_metadata(root.path(), "dev-1").unwrap(), m);
        assert!(humantime::parse_rfc3339(&m.started_at).is_ok());
        let json: serde_json::Value = serde_json::from_slice(&fs::read(p).unwrap()).unwrap();
        for key in [
            "identity",
            "agent",
            "bottle",
            "cwd",
            "copy_cwd",
            "started_at",
            "compose_project",
            "backend",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert!(matches!(
            load_metadata(root.path(), "nope"),
            Err(StateError::NotFound { .. })
        ));
    }

    #[test]
    fn preserve_controls_removal() {
        let root = tempfile::tempdir().unwrap();
        let kept = StateDir::create(root.path(), "kept").unwrap();
        kept.preserve().unwrap();
        assert!(kept.is_preserved());
        assert!(!kept.remove_unless_preserved().unwrap());
        assert!(kept.path().is_dir());

        let gone = StateDir::create(root.path(), "gone").unwrap();
        fs::create_dir(gone.transcript_dir()).unwrap();
        fs::write(gone.transcript_dir().join("t.jsonl"), "{}").unwrap();
        assert!(!gone.is_preserved());
        assert!(gone.remove_unless_preserved().unwrap());
        assert!(!gone.path().exists());
        // idempotent
        assert!(gone.remove_unless_preserved().unwrap());
    }

    #[test]
    fn list_reports_metadata_preserve_and_skips_foreign_entries() {
        let root = tempfile::tempdir().unwrap();
        assert!(list(root.path()).unwrap().is_empty());
        let a = StateDir::create(root.path(), "b-second").unwrap();
        a.write_metadata(&meta("b-second")).unwrap();
        let b = StateDir::create(root.path(), "a-first").unwrap();
        b.preserve().unwrap();
        fs::write(root.path().join("state/stray-file"), "").unwrap();
        fs::create_dir(root.path().join("state/NotOurs")).unwrap();
        let entries = list(root.path()).unwrap();
        let ids: Vec<_> = entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a-first", "b-second"]);
        assert!(entries[0].preserved && entries[0].metadata.is_none());
        assert!(!entries[1].preserved);
        assert_eq!(
            entries[1].metadata.as_ref().map(|m| m.agent.as_str()),
            Some("dev")
        );
        assert_eq!(entries[1].dir(), a);
    }

    #[test]
    fn corrupt_metadata_is_a_clear_error() {
        let root = tempfile::tempdir().unwrap();
        let sd = StateDir::create(root.path(), "c").unwrap();
        sd.write_file(METADATA_FILE, "{not json", None).unwrap();
        let err = sd.metadata().unwrap_err();
        assert!(matches!(err, StateError::Metadata { .. }));
        assert!(err.to_string().contains("cleanup"), "{err}");
    }

    #[test]
    fn no_space_is_reported_before_anything_is_created() {
        let root = tempfile::tempdir().unwrap();
        let err = check_writable(root.path(), u64::MAX).unwrap_err();
        assert!(matches!(err, StateError::NoSpace { .. }), "{err}");
        assert!(err.to_string().contains("free disk space"), "{err}");
        assert!(check_writable(root.path(), 1).is_ok());
    }

    #[test]
    fn read_only_state_root_fails_writability_check() {
        // root ignores permission bits; only meaningful for unprivileged users.
        if unsafe { libc::geteuid() } == 0 {
            eprintln!("skipped: running as root, permission bits are not enforced");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o500)).unwrap();
        let err = StateDir::create(root.path(), "ro").unwrap_err();
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o700)).unwrap();
        assert!(matches!(err, StateError::Io { .. }), "{err}");
    }
}
