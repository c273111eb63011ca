//! Approved routes with a lifetime, applied to egress's live routes file.
//!
//! The routes egress started with are kept as the base (`base-routes.json` in the spool,
//! copied from the routes file the first time a grant is applied). The live routes file is
//! always the base plus the grants still in force, rendered whole and renamed into place, so
//! egress (which re-reads the file when it changes) never sees half a file. A grant that
//! expires leaves the live file the next time [`Grants::apply`] runs, and is written to the
//! spool's event log (`events.jsonl`) for the host's audit.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::SuperviseError;
use super::spool::{Lifetime, now_rfc3339, write_atomic};
use super::validate::RouteProposal;
use crate::sidecar::egress::config::parse_routes;
use crate::sidecar::egress::reload::read_routes_file;
use crate::sidecar::wire::{RouteEntry, RoutesFile};

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
    pub expires_at_ms: Option<u64>,
}

/// Something that happened to a grant, for the host's audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantEvent {
    pub time: String,
    /// `granted` or `expired`.
    pub event: String,
    pub id: String,
    pub host: String,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The routes document for `base` (routes file text) plus the `grants` in force: a granted
/// host already in the base widens that route's path allowlist (an empty list on either side
/// means the whole host); a new host is added without credential or passthrough.
pub fn render(base: &str, grants: &[Grant]) -> Result<String, String> {
    let mut routes: Vec<RouteEntry> = parse_routes(base)?;
    for g in grants {
        let existing = routes
            .iter_mut()
            .find(|r| r.host.eq_ignore_ascii_case(&g.route.host));
        match existing {
            Some(r) => {
                if r.path_allowlist.is_empty() || g.route.path_prefixes.is_empty() {
                    r.path_allowlist.clear();
                } else {
                    for p in &g.route.path_prefixes {
                        if !r.path_allowlist.contains(p) {
                            r.path_allowlist.push(p.clone());
                        }
                    }
                }
            }
            None => {
                let mut r = RouteEntry::host(g.route.host.clone());
                r.path_allowlist = g.route.path_prefixes.clone();
                routes.push(r);
            }
        }
    }
    serde_json::to_string_pretty(&RoutesFile { routes })
        .map(|t| t + "\n")
        .map_err(|e| e.to_string())
}

/// The grants of one bottle, kept in the spool.
#[derive(Debug, Clone)]
pub struct Grants {
    spool: PathBuf,
    routes_file: PathBuf,
}

impl Grants {
    pub fn new(spool: &Path, routes_file: &Path) -> Self {
        Grants {
            spool: spool.to_path_buf(),
            routes_file: routes_file.to_path_buf(),
        }
    }

    fn grants_path(&self) -> PathBuf {
        self.spool.join("grants.json")
    }

    fn base_path(&self) -> PathBuf {
        self.spool.join("base-routes.json")
    }

    /// The event log the host follows.
    pub fn events_path(&self) -> PathBuf {
        self.spool.join("events.jsonl")
    }

    fn io(path: &Path) -> impl Fn(std::io::Error) -> SuperviseError + '_ {
        move |source| SuperviseError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Grants on record (expired ones included until the next [`Grants::apply`]).
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

    fn base(&self) -> Result<String, SuperviseError> {
        let base = self.base_path();
        if !base.exists() {
            let text =
                read_routes_file(&self.routes_file).map_err(|e| SuperviseError::Corrupt {
                    path: self.routes_file.clone(),
                    message: e.to_string(),
                })?;
            write_atomic(&base, text.as_bytes(), false)?;
        }
        fs::read_to_string(&base).map_err(Self::io(&base))
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

    /// Drop expired grants and rewrite the live routes file when it changes. Returns the
    /// grants that expired.
    pub fn apply(&self, now: u64) -> Result<Vec<Grant>, SuperviseError> {
        let all = self.load()?;
        if all.is_empty() && !self.base_path().exists() {
            return Ok(Vec::new());
        }
        let (live, expired): (Vec<Grant>, Vec<Grant>) = all
            .into_iter()
            .partition(|g| g.expires_at_ms.is_none_or(|t| t > now));
        if !expired.is_empty() {
            let body = serde_json::to_vec_pretty(&live).map_err(SuperviseError::Encode)?;
            write_atomic(&self.grants_path(), &body, false)?;
            for g in &expired {
                self.event("expired", g)?;
            }
        }
        let rendered = render(&self.base()?, &live).map_err(|m| SuperviseError::Corrupt {
            path: self.base_path(),
            message: m,
        })?;
        let current = fs::read_to_string(&self.routes_file).unwrap_or_default();
        if current != rendered {
            write_atomic(&self.routes_file, rendered.as_bytes(), false)?;
        }
        Ok(expired)
    }

    /// When the next grant expires, if any.
    pub fn next_expiry(&self) -> Result<Option<u64>, SuperviseError> {
        Ok(self.load()?.iter().filter_map(|g| g.expires_at_ms).min())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::egress::config::parse_routes;

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

    const BASE: &str = r#"{"routes": [{"host": "api.github.com", "path_allowlist": ["/repos/"], "auth_scheme": "Bearer", "token_env": "GH"}, {"host": "pypi.org"}]}"#;

    #[test]
    fn render_adds_and_widens_routes_keeping_credentials() {
        let out = render(
            BASE,
            &[
                grant("1", "example.com", &["/api/"], None),
                grant("2", "api.github.com", &["/orgs/"], None),
            ],
        )
        .unwrap();
        let routes = parse_routes(&out).unwrap();
        assert_eq!(routes.len(), 3);
        assert_eq!(routes[0].host, "api.github.com");
        assert_eq!(routes[0].path_allowlist, vec!["/repos/", "/orgs/"]);
        assert_eq!(routes[0].token_env.as_deref(), Some("GH"));
        assert_eq!(routes[2].host, "example.com");
        assert_eq!(routes[2].path_allowlist, vec!["/api/"]);
        // A whole-host grant on a path-limited route opens the whole host.
        let out = render(BASE, &[grant("3", "api.github.com", &[], None)]).unwrap();
        assert!(parse_routes(&out).unwrap()[0].path_allowlist.is_empty());
    }

    #[test]
    fn expired_grants_leave_the_live_file_and_are_logged() {
        let dir = tempfile::tempdir().unwrap();
        let routes = dir.path().join("routes.yaml");
        fs::write(&routes, BASE).unwrap();
        let g = Grants::new(dir.path(), &routes);
        g.add(
            grant("0000000000001-000001", "a.test", &[], Some(1_000)),
            500,
        )
        .unwrap();
        g.add(grant("0000000000001-000002", "b.test", &[], None), 500)
            .unwrap();
        let hosts = |p: &Path| -> Vec<String> {
            parse_routes(&fs::read_to_string(p).unwrap())
                .unwrap()
                .into_iter()
                .map(|r| r.host)
                .collect()
        };
        assert_eq!(
            hosts(&routes),
            ["api.github.com", "pypi.org", "a.test", "b.test"]
        );
        assert_eq!(g.next_expiry().unwrap(), Some(1_000));
        assert!(g.apply(999).unwrap().is_empty());
        let expired = g.apply(1_000).unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(hosts(&routes), ["api.github.com", "pypi.org", "b.test"]);
        let events = fs::read_to_string(g.events_path()).unwrap();
        let kinds: Vec<String> = events
            .lines()
            .map(|l| serde_json::from_str::<GrantEvent>(l).unwrap().event)
            .collect();
        assert_eq!(kinds, ["granted", "granted", "expired"]);
        assert_eq!(g.next_expiry().unwrap(), None);
    }
}
