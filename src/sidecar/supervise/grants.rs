//! Approved routes with a lifetime, handed to egress as its grants file.
//!
//! Supervise is the only writer of the grants file (`granted.json` in the spool, the wire
//! type [`GrantsFile`]); the launcher is the only writer of the routes file. Egress reads both
//! and its live policy is the two together, so a route update from the host never drops a
//! grant and a grant never rewrites what the launcher wrote. The grants on record (with their
//! lifetimes) are `grants.json`; the grants file is rendered from the ones still in force,
//! whole, and renamed into place. A grant that expires, or a `once` grant egress marked as
//! used (`once-used/<id>`), leaves the grants file the next time [`Grants::apply`] runs, and
//! is written to the spool's event log (`events.jsonl`) for the host's audit.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::SuperviseError;
use super::spool::{Lifetime, now_rfc3339, write_atomic, write_renamed};
use super::validate::RouteProposal;
use crate::sidecar::wire::{GRANTS_FILE, GrantEntry, GrantsFile, WireFile};

/// Where egress marks used `once` grants, inside the spool.
pub(crate) const ONCE_USED_DIR: &str = "once-used";

/// One approved route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The request it answers.
    pub id: String,
    pub route: RouteProposal,
    pub lifetime: Lifetime,
    /// Unix milliseconds after which the grant is gone; `None` lasts until the bottle ends.
    #[serde(default)]
    pub(crate) expires_at_ms: Option<u64>,
}

impl Grant {
    /// The grant as egress reads it.
    pub(crate) fn entry(&self) -> GrantEntry {
        GrantEntry {
            id: self.id.clone(),
            host: self.route.host.clone(),
            path_prefixes: self.route.path_prefixes.clone(),
            methods: self.route.methods.clone(),
            once: self.lifetime == Lifetime::Once,
        }
    }
}

/// Something that happened to a grant, for the host's audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantEvent {
    pub time: String,
    /// `granted`, `expired` or `used` (a `once` grant served its request).
    pub event: String,
    pub id: String,
    pub host: String,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The grants file for the `grants` in force.
pub(crate) fn render(grants: &[Grant]) -> String {
    GrantsFile {
        grants: grants.iter().map(Grant::entry).collect(),
    }
    .render()
}

/// The grants of one bottle, kept in the spool.
#[derive(Debug, Clone)]
pub struct Grants {
    spool: PathBuf,
}

impl Grants {
    /// The grants kept in `spool`. (`_routes_file` is egress's routes file, which grants
    /// never write; kept so callers name the files the daemon works with.)
    pub fn new(spool: &Path, _routes_file: &Path) -> Self {
        Grants {
            spool: spool.to_path_buf(),
        }
    }

    fn grants_path(&self) -> PathBuf {
        self.spool.join("grants.json")
    }

    /// The grants file egress reads.
    pub(crate) fn live_path(&self) -> PathBuf {
        self.spool.join(GRANTS_FILE)
    }

    /// Where egress marks used `once` grants.
    pub(crate) fn used_dir(&self) -> PathBuf {
        self.spool.join(ONCE_USED_DIR)
    }

    /// The event log the host follows.
    pub(crate) fn events_path(&self) -> PathBuf {
        self.spool.join("events.jsonl")
    }

    fn io(path: &Path) -> impl Fn(std::io::Error) -> SuperviseError + '_ {
        move |source| SuperviseError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Grants on record (expired or used ones included until the next [`Grants::apply`]).
    pub fn load(&self) -> Result<Vec<Grant>, SuperviseError> {
        let p = self.grants_path();
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| SuperviseError::Corrupt {
                path: p,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Self::io(&p)(e)),
        }
    }

    fn event(&self, event: &str, g: &Grant) -> Result<(), SuperviseError> {
        let p = self.events_path();
        let line = serde_json::to_string(&GrantEvent {
            time: now_rfc3339(),
            event: event.into(),
            id: g.id.clone(),
            host: g.route.host.clone(),
        })
        .map_err(SuperviseError::Encode)?;
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(Self::io(&p))?;
        f.write_all(format!("{line}\n").as_bytes())
            .map_err(Self::io(&p))
    }

    /// Add a grant and make it live.
    pub fn add(&self, g: Grant, now: u64) -> Result<(), SuperviseError> {
        let mut all = self.load()?;
        all.retain(|x| x.id != g.id);
        all.push(g.clone());
        let body = serde_json::to_vec_pretty(&all).map_err(SuperviseError::Encode)?;
        write_atomic(&self.grants_path(), &body, false)?;
        self.event("granted", &g)?;
        self.apply(now)?;
        Ok(())
    }

    /// Drop expired and used grants and rewrite the grants file when it changes. Returns the
    /// grants that left.
    pub(crate) fn apply(&self, now: u64) -> Result<Vec<Grant>, SuperviseError> {
        let all = self.load()?;
        let live_path = self.live_path();
        if all.is_empty() && !live_path.exists() {
            return Ok(Vec::new());
        }
        let used_dir = self.used_dir();
        let used = |g: &Grant| g.lifetime == Lifetime::Once && used_dir.join(&g.id).exists();
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for g in all {
            if used(&g) {
                gone.push(("used", g));
            } else if g.expires_at_ms.is_some_and(|t| t <= now) {
                gone.push(("expired", g));
            } else {
                live.push(g);
            }
        }
        if !gone.is_empty() {
            let body = serde_json::to_vec_pretty(&live).map_err(SuperviseError::Encode)?;
            write_atomic(&self.grants_path(), &body, false)?;
            for (event, g) in &gone {
                self.event(event, g)?;
            }
        }
        let rendered = render(&live);
        let current = fs::read_to_string(&live_path).unwrap_or_default();
        if current != rendered {
            // Rendered from `grants.json`, which is synced: no second sync on the way to live.
            write_renamed(&live_path, rendered.as_bytes(), false, false)?;
        }
        Ok(gone.into_iter().map(|(_, g)| g).collect())
    }

    /// When the next grant expires, if any.
    #[cfg(test)]
    pub(crate) fn next_expiry(&self) -> Result<Option<u64>, SuperviseError> {
        Ok(self.load()?.iter().filter_map(|g| g.expires_at_ms).min())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(id: &str, host: &str, paths: &[&str], expires: Option<u64>) -> Grant {
        Grant {
            id: id.into(),
            route: RouteProposal {
                host: host.into(),
                path_prefixes: paths.iter().map(|s| s.to_string()).collect(),
                methods: vec![],
            },
            lifetime: Lifetime::Session,
            expires_at_ms: expires,
        }
    }

    fn live_hosts(g: &Grants) -> Vec<String> {
        GrantsFile::parse(&fs::read_to_string(g.live_path()).unwrap())
            .unwrap()
            .grants
            .into_iter()
            .map(|e| e.host)
            .collect()
    }

    #[test]
    fn expired_and_used_grants_leave_the_grants_file_and_are_logged() {
        let dir = tempfile::tempdir().unwrap();
        let routes = dir.path().join("routes.json");
        fs::write(&routes, "{\"routes\": []}\n").unwrap();
        let g = Grants::new(dir.path(), &routes);
        g.add(
            grant("0000000000001-000001", "a.test", &[], Some(1_000)),
            500,
        )
        .unwrap();
        g.add(grant("0000000000001-000002", "b.test", &["/x/"], None), 500)
            .unwrap();
        let mut once = grant("0000000000001-000003", "c.test", &[], None);
        once.lifetime = Lifetime::Once;
        g.add(once, 500).unwrap();
        assert_eq!(live_hosts(&g), ["a.test", "b.test", "c.test"]);
        let file = GrantsFile::parse(&fs::read_to_string(g.live_path()).unwrap()).unwrap();
        assert!(file.grants[2].once && !file.grants[1].once);
        assert_eq!(file.grants[1].path_prefixes, ["/x/"]);
        // The routes file is the launcher's: grants never touch it.
        assert_eq!(fs::read_to_string(&routes).unwrap(), "{\"routes\": []}\n");
        assert_eq!(g.next_expiry().unwrap(), Some(1_000));
        assert!(g.apply(999).unwrap().is_empty());
        let gone = g.apply(1_000).unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(live_hosts(&g), ["b.test", "c.test"]);
        // Egress marks the once grant used; the next apply retires it.
        fs::create_dir_all(g.used_dir()).unwrap();
        fs::write(g.used_dir().join("0000000000001-000003"), "").unwrap();
        assert_eq!(g.apply(1_001).unwrap().len(), 1);
        assert_eq!(live_hosts(&g), ["b.test"]);
        let events = fs::read_to_string(g.events_path()).unwrap();
        let kinds: Vec<String> = events
            .lines()
            .map(|l| serde_json::from_str::<GrantEvent>(l).unwrap().event)
            .collect();
        assert_eq!(kinds, ["granted", "granted", "granted", "expired", "used"]);
        assert_eq!(g.next_expiry().unwrap(), None);
    }
}
