//! The host as the plan sees it. [`HostEnv::from_process`] is the single place plan
//! resolution reads the process environment, the clock and the random source; everything
//! else takes a `HostEnv`, so tests fix all of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngExt as _;

/// Length of the random part of a minted identity.
pub(crate) const SUFFIX_LEN: usize = 6;
const SUFFIX_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// `Debug` lists variable names only: the environment holds the operator's secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct HostEnv {
    /// The process environment (only entries whose name and value are UTF-8).
    pub(crate) vars: BTreeMap<String, String>,
    /// `$HOME`, when set and non-empty.
    pub home: Option<PathBuf>,
    pub cwd: PathBuf,
    /// Seconds since the Unix epoch: token expiry checks and the bottle's start time.
    pub(crate) now_unix: u64,
    /// [`SUFFIX_LEN`] chars of `[a-z0-9]`, the random part of a fresh identity.
    pub(crate) random_suffix: String,
    /// The running executable (the bundled sidecar binaries are found next to it).
    pub exe: Option<PathBuf>,
    /// The host's extra-CA directory ([`super::cas::SYSTEM_EXTRA_CA_DIR`]); `None` in tests.
    pub(crate) system_ca_dir: Option<PathBuf>,
    /// CPUs this host offers (at least 1): the cap on a bottle's CPU limit.
    pub cpus: u32,
}

impl std::fmt::Debug for HostEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostEnv")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("home", &self.home)
            .field("cwd", &self.cwd)
            .field("now_unix", &self.now_unix)
            .field("random_suffix", &self.random_suffix)
            .field("exe", &self.exe)
            .field("system_ca_dir", &self.system_ca_dir)
            .field("cpus", &self.cpus)
            .finish()
    }
}

impl HostEnv {
    pub fn from_process() -> HostEnv {
        let vars: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        // A deleted cwd is unusual; `/` keeps resolution going and `--cwd` will fail loudly.
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut rng = rand::rng();
        let random_suffix = (0..SUFFIX_LEN)
            .map(|_| char::from(SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())]))
            .collect();
        HostEnv {
            vars,
            home,
            cwd,
            now_unix,
            random_suffix,
            exe: std::env::current_exe().ok(),
            system_ca_dir: Some(PathBuf::from(super::cas::SYSTEM_EXTRA_CA_DIR)),
            cpus: std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
                .unwrap_or(1),
        }
    }

    /// A host variable, treating an empty value as unset.
    pub(crate) fn var_nonempty(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Expand a leading `~` / `~/` against `home`; a relative result is taken against `cwd`.
    pub(crate) fn resolve_path(&self, written: &str) -> Result<PathBuf, super::PlanError> {
        self.resolve_path_from(written, &self.cwd)
    }

    /// Like [`HostEnv::resolve_path`], with relative paths taken against `base`.
    pub(crate) fn resolve_path_from(
        &self,
        written: &str,
        base: &Path,
    ) -> Result<PathBuf, super::PlanError> {
        let expanded = if written == "~" {
            self.home.clone().ok_or(super::PlanError::NoHome)?
        } else if let Some(rest) = written.strip_prefix("~/") {
            self.home
                .as_deref()
                .ok_or(super::PlanError::NoHome)?
                .join(rest)
        } else {
            PathBuf::from(written)
        };
        Ok(if expanded.is_absolute() {
            expanded
        } else {
            base.join(expanded)
        })
    }

    pub fn home(&self) -> Result<&Path, super::PlanError> {
        self.home.as_deref().ok_or(super::PlanError::NoHome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_process_draws_a_well_formed_suffix() {
        let h = HostEnv::from_process();
        assert_eq!(h.random_suffix.len(), SUFFIX_LEN);
        assert!(
            h.random_suffix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert!(h.now_unix > 0);
    }

    #[test]
    fn from_process_suffixes_differ_between_draws() {
        // 36^6 values: a few draws colliding every time would mean no randomness at all.
        let draws: std::collections::BTreeSet<String> = (0..4)
            .map(|_| HostEnv::from_process().random_suffix)
            .collect();
        assert!(draws.len() > 1);
    }

    fn host() -> HostEnv {
        HostEnv {
            vars: BTreeMap::new(),
            home: Some(PathBuf::from("/h")),
            cwd: PathBuf::from("/work/repo"),
            now_unix: 1,
            random_suffix: "abc123".into(),
            exe: None,
            system_ca_dir: None,
            cpus: 4,
        }
    }

    #[test]
    fn resolve_path_expands_tilde_and_joins_relative_to_cwd() {
        let h = host();
        assert_eq!(h.resolve_path("~").unwrap(), PathBuf::from("/h"));
        assert_eq!(
            h.resolve_path("~/.ssh/k").unwrap(),
            PathBuf::from("/h/.ssh/k")
        );
        assert_eq!(h.resolve_path("/abs/k").unwrap(), PathBuf::from("/abs/k"));
        assert_eq!(
            h.resolve_path("rel/D").unwrap(),
            PathBuf::from("/work/repo/rel/D")
        );
        // `~user` is not expanded: it is taken as a relative name.
        assert_eq!(
            h.resolve_path("~bob/k").unwrap(),
            PathBuf::from("/work/repo/~bob/k")
        );
    }

    #[test]
    fn resolve_path_without_home_is_an_error_only_for_tilde() {
        let mut h = host();
        h.home = None;
        assert!(matches!(
            h.resolve_path("~/k"),
            Err(crate::plan::PlanError::NoHome)
        ));
        assert!(h.resolve_path("/abs").is_ok());
    }

    #[test]
    fn debug_shows_variable_names_but_not_values() {
        let mut h = host();
        h.vars.insert("GH_PAT".into(), "ghp_SECRETvalue".into());
        let d = format!("{h:?}");
        assert!(
            d.contains("GH_PAT") && !d.contains("ghp_SECRETvalue"),
            "{d}"
        );
    }

    #[test]
    fn var_nonempty_treats_empty_as_unset() {
        let mut h = host();
        h.vars.insert("A".into(), String::new());
        h.vars.insert("B".into(), "x".into());
        assert_eq!(h.var_nonempty("A"), None);
        assert_eq!(h.var_nonempty("B"), Some("x"));
        assert_eq!(h.var_nonempty("C"), None);
    }
}
