//! A prompt wakeup for the policy watcher: Linux inotify on the directories of the routes file
//! and the grants file, so a grant renamed into place is read at once instead of at the next
//! poll (the poll's average wait was most of egress's share of approval→live).
//!
//! Only an accelerator. The poll in [`super::reload`] stays in charge of correctness: a
//! directory that cannot be watched yet (supervise creates its spool after egress starts) is
//! tried again on every poll, a change the kernel does not report (a `docker cp` through a
//! storage driver that bypasses the mount) is still found by the poll, and an inotify failure
//! leaves polling alone.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// What wakes the watcher: the file was written and closed, renamed in or out, or removed.
const MASK: u32 = libc::IN_CLOSE_WRITE | libc::IN_MOVED_TO | libc::IN_MOVED_FROM | libc::IN_DELETE;

/// One watched directory and the file names in it that matter.
struct Dir {
    path: PathBuf,
    names: Vec<OsString>,
    /// The watch descriptor, once the directory could be watched.
    wd: Option<i32>,
}

/// Inotify watches on the directories of some files.
pub(crate) struct Wake {
    fd: AsyncFd<OwnedFd>,
    dirs: Vec<Dir>,
}

impl Wake {
    /// Watch the directories of `files` (missing ones are tried again by [`Wake::rewatch`]).
    /// `None` when inotify is not available.
    pub(crate) fn new(files: &[&Path]) -> Option<Wake> {
        // SAFETY: no pointers; the returned descriptor is owned below.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            tracing::debug!(
                "no inotify ({}); policy changes are found by polling",
                std::io::Error::last_os_error()
            );
            return None;
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the `OwnedFd` stays inside the `AsyncFd` and is closed only when it drops.
        // Called from the watcher task, so a reactor is there.
        let fd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }.ok()?;
        let mut dirs: Vec<Dir> = Vec::new();
        for f in files {
            let (Some(dir), Some(name)) = (f.parent(), f.file_name()) else {
                continue;
            };
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            match dirs.iter_mut().find(|d| d.path == dir) {
                Some(d) => d.names.push(name.to_os_string()),
                None => dirs.push(Dir {
                    path: dir.to_path_buf(),
                    names: vec![name.to_os_string()],
                    wd: None,
                }),
            }
        }
        let mut wake = Wake { fd, dirs };
        wake.rewatch();
        Some(wake)
    }

    /// Add the watches still missing (a directory created since, or one that went away and
    /// came back). One failing system call per missing directory.
    pub(crate) fn rewatch(&mut self) {
        let fd = self.fd.get_ref().as_raw_fd();
        for d in self.dirs.iter_mut().filter(|d| d.wd.is_none()) {
            let Ok(c) = CString::new(d.path.as_os_str().as_bytes()) else {
                continue;
            };
            // SAFETY: `fd` is our inotify descriptor and `c` a NUL-terminated path that
            // outlives the call.
            let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), MASK) };
            if wd >= 0 {
                d.wd = Some(wd);
            }
        }
    }

    /// Wait until one of the files changed. Returns `false` when the inotify descriptor
    /// failed (the caller then polls only).
    pub(crate) async fn changed(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            let mut guard = match self.fd.readable_mut().await {
                Ok(g) => g,
                Err(_) => return false,
            };
            let read = guard.try_io(|inner| {
                let fd = inner.get_ref().as_raw_fd();
                // SAFETY: reads at most `buf.len()` bytes into `buf`, which outlives the call.
                let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            let n = match read {
                Ok(Ok(n)) => n,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(Err(_)) => return false,
                // Not ready after all: wait again.
                Err(_would_block) => continue,
            };
            if self.take_events(&buf[..n]) {
                return true;
            }
        }
    }

    /// Go through a buffer of inotify events: forget watches the kernel dropped, and say
    /// whether any event names one of the files.
    fn take_events(&mut self, mut buf: &[u8]) -> bool {
        const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
        let mut hit = false;
        while buf.len() >= HEADER {
            let wd = i32::from_ne_bytes(buf[0..4].try_into().unwrap_or_default());
            let mask = u32::from_ne_bytes(buf[4..8].try_into().unwrap_or_default());
            let len = u32::from_ne_bytes(buf[12..16].try_into().unwrap_or_default()) as usize;
            let end = (HEADER + len).min(buf.len());
            let raw_name = &buf[HEADER..end];
            let name = &raw_name[..raw_name
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(raw_name.len())];
            buf = &buf[end..];
            if mask & libc::IN_Q_OVERFLOW != 0 {
                // Events were lost: read the files to be sure.
                hit = true;
                continue;
            }
            let Some(d) = self.dirs.iter_mut().find(|d| d.wd == Some(wd)) else {
                continue;
            };
            if mask & libc::IN_IGNORED != 0 {
                // The directory went away; `rewatch` adds it again once it is back.
                d.wd = None;
                continue;
            }
            let name = OsString::from_vec(name.to_vec());
            if d.names.contains(&name) {
                hit = true;
            }
        }
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn changed_within(w: &mut Wake, limit: Duration) -> bool {
        tokio::time::timeout(limit, w.changed())
            .await
            .unwrap_or(false)
    }

    #[tokio::test]
    async fn a_renamed_file_wakes_and_other_files_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let grants = dir.path().join("spool").join("granted.json");
        let routes = dir.path().join("routes.json");
        std::fs::write(&routes, "{}").unwrap();
        let mut w = Wake::new(&[&routes, &grants]).expect("inotify");
        // The spool does not exist yet: only the routes directory is watched.
        assert_eq!(w.dirs.iter().filter(|d| d.wd.is_some()).count(), 1);
        std::fs::create_dir(dir.path().join("spool")).unwrap();
        w.rewatch();
        assert!(w.dirs.iter().all(|d| d.wd.is_some()));

        // Another file in the spool is no reason to wake.
        std::fs::write(dir.path().join("spool").join("events.jsonl"), "x").unwrap();
        assert!(!changed_within(&mut w, Duration::from_millis(300)).await);

        // The grants file renamed into place is.
        let tmp = dir.path().join("spool").join(".tmp");
        std::fs::write(&tmp, "{\"grants\": []}").unwrap();
        std::fs::rename(&tmp, &grants).unwrap();
        assert!(changed_within(&mut w, Duration::from_secs(10)).await);

        // So is the routes file written in place, and its removal.
        std::fs::write(&routes, "{\"routes\": []}").unwrap();
        assert!(changed_within(&mut w, Duration::from_secs(10)).await);
        std::fs::remove_file(&routes).unwrap();
        assert!(changed_within(&mut w, Duration::from_secs(10)).await);
    }

    #[tokio::test]
    async fn a_directory_that_comes_back_is_watched_again() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        let grants = spool.join("granted.json");
        let mut w = Wake::new(&[&grants]).expect("inotify");
        std::fs::remove_dir(&spool).unwrap();
        // The kernel drops the watch (IN_IGNORED); that alone is not a change of the file.
        assert!(!changed_within(&mut w, Duration::from_millis(300)).await);
        assert!(w.dirs[0].wd.is_none());
        std::fs::create_dir(&spool).unwrap();
        w.rewatch();
        std::fs::write(&grants, "{\"grants\": []}").unwrap();
        assert!(changed_within(&mut w, Duration::from_secs(10)).await);
    }
}
