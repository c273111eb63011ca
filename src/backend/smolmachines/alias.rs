//! The per-bottle loopback alias (`127.0.0.16`–`127.0.0.31`).
//!
//! The VM's network allowlist is one address, the alias's /32, and the bottle's sidecar
//! bundle publishes its ports on that address only, so a VM can reach its own gates and
//! nothing else on the host's loopback: not another bottle's bundle, not a database or dev
//! server on `127.0.0.1`. Allocation is pure over the aliases running bundles carry in their
//! labels; a file lock around allocate-then-start keeps two launches from taking the same
//! one. macOS routes only `127.0.0.1` on `lo0` by default, so a missing alias is added with
//! sudo, the whole pool in one command: one password prompt per boot. Linux routes all of
//! `127.0.0.0/8` to `lo`, so nothing is added there.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::runner::{ProcessSpec, shell_escape};

/// First and last host part of the pool: clear of `127.0.0.1`–`.3` (macOS uses some) and
/// of `127.0.0.53`/`.54` (systemd-resolved, libvirt).
pub(crate) const POOL_FIRST: u8 = 16;
pub(crate) const POOL_LAST: u8 = 31;

/// Every alias in the pool, lowest first.
pub(crate) fn pool() -> Vec<Ipv4Addr> {
    (POOL_FIRST..=POOL_LAST)
        .map(|n| Ipv4Addr::new(127, 0, 0, n))
        .collect()
}

/// The lowest pool alias not in use, or `None` when all are taken.
pub(crate) fn allocate(in_use: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    pool().into_iter().find(|a| !in_use.contains(a))
}

/// The allowlist the VM gets: exactly the alias.
pub(crate) fn allow_cidr(alias: Ipv4Addr) -> String {
    format!("{alias}/32")
}

/// Pool aliases that `ifconfig lo0` does not list (exact match: `127.0.0.1` is not
/// `127.0.0.16`).
pub(crate) fn missing_on_lo0(ifconfig_output: &str) -> Vec<Ipv4Addr> {
    let present: BTreeSet<Ipv4Addr> = ifconfig_output
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("inet"))
                .then(|| words.next())
                .flatten()
                .and_then(|a| a.split('/').next())
                .and_then(|a| a.parse().ok())
        })
        .collect();
    pool()
        .into_iter()
        .filter(|a| !present.contains(a))
        .collect()
}

/// `ifconfig lo0`, read to see which aliases exist.
pub(crate) fn show_lo0_spec() -> ProcessSpec {
    ProcessSpec::new("ifconfig").arg("lo0")
}

/// One sudo call that adds every missing alias (so the operator types the password once).
pub(crate) fn add_aliases_spec(missing: &[Ipv4Addr]) -> ProcessSpec {
    let script = missing
        .iter()
        .map(|a| format!("ifconfig lo0 alias {} up", shell_escape(&allow_cidr(*a))))
        .collect::<Vec<_>>()
        .join(" && ");
    ProcessSpec::new("sudo")
        .args([
            "-p",
            "bot-bottle: password to add loopback aliases for smolmachines (once per boot): ",
            "sh",
            "-c",
        ])
        .arg(script)
}

/// An exclusive lock on a file, released on drop. Held from reading the aliases in use
/// until the new bundle runs and carries its own.
pub(crate) struct AllocationLock {
    file: std::fs::File,
}

impl AllocationLock {
    pub(crate) fn acquire(path: &Path) -> std::io::Result<AllocationLock> {
        use std::os::unix::io::AsRawFd as _;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        // SAFETY: flock on a descriptor we own; blocks until the lock is ours.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(AllocationLock { file })
    }
}

impl Drop for AllocationLock {
    fn drop(&mut self) {
        use std::os::unix::io::AsRawFd as _;
        // SAFETY: unlocking a descriptor we own; closing it would release the lock anyway.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 0, n)
    }

    #[test]
    fn the_pool_is_sixteen_addresses_from_16_to_31() {
        let p = pool();
        assert_eq!(p.len(), 16);
        assert_eq!(p.first(), Some(&ip(16)));
        assert_eq!(p.last(), Some(&ip(31)));
    }

    #[test]
    fn allocation_takes_the_lowest_free_alias() {
        assert_eq!(allocate(&BTreeSet::new()), Some(ip(16)));
        assert_eq!(allocate(&BTreeSet::from([ip(16), ip(17)])), Some(ip(18)));
        // A gap left by a bottle that ended is reused first.
        assert_eq!(allocate(&BTreeSet::from([ip(16), ip(18)])), Some(ip(17)));
        // Addresses outside the pool do not matter.
        assert_eq!(allocate(&BTreeSet::from([ip(1), ip(32)])), Some(ip(16)));
    }

    #[test]
    fn an_exhausted_pool_allocates_nothing() {
        let all: BTreeSet<Ipv4Addr> = pool().into_iter().collect();
        assert_eq!(allocate(&all), None);
        let mut all_but_last = all.clone();
        all_but_last.remove(&ip(31));
        assert_eq!(allocate(&all_but_last), Some(ip(31)));
    }

    #[test]
    fn the_allowlist_is_the_alias_alone() {
        assert_eq!(allow_cidr(ip(20)), "127.0.0.20/32");
    }

    #[test]
    fn missing_aliases_are_read_exactly_from_ifconfig() {
        let out = "lo0: flags=8049<UP,LOOPBACK,RUNNING,MULTICAST> mtu 16384\n\
                   \toptions=1203<RXCSUM,TXCSUM,TXSTATUS,SW_TIMESTAMP>\n\
                   \tinet 127.0.0.1 netmask 0xff000000\n\
                   \tinet6 ::1 prefixlen 128\n\
                   \tinet 127.0.0.16 netmask 0xffffffff\n\
                   \tinet 127.0.0.17/32\n";
        let missing = missing_on_lo0(out);
        assert_eq!(missing.len(), 14);
        assert!(!missing.contains(&ip(16)) && !missing.contains(&ip(17)));
        assert_eq!(missing.first(), Some(&ip(18)));
        assert_eq!(missing_on_lo0("").len(), 16);
    }

    #[test]
    fn aliases_are_added_in_one_sudo_call() {
        let spec = add_aliases_spec(&[ip(18), ip(19)]);
        assert_eq!(spec.program, "sudo");
        assert_eq!(
            spec.args.last().map(String::as_str),
            Some("ifconfig lo0 alias 127.0.0.18/32 up && ifconfig lo0 alias 127.0.0.19/32 up")
        );
        assert_eq!(show_lo0_spec().argv(), vec!["ifconfig", "lo0"]);
    }

    #[test]
    fn the_lock_is_exclusive_until_dropped() {
        use std::os::unix::io::AsRawFd as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/alias.lock");
        let try_lock = || {
            let f = std::fs::File::open(&path).unwrap();
            // SAFETY: a non-blocking flock on a descriptor this closure owns.
            let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            rc == 0
        };
        let held = AllocationLock::acquire(&path).unwrap();
        assert!(!try_lock(), "a second holder got the lock");
        drop(held);
        assert!(try_lock(), "the lock outlived its holder");
    }
}
