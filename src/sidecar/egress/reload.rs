//! Live reload of the routes file and the grants file.
//!
//! Both files are read when inotify reports a change in their directories ([`super::wake`]),
//! and polled every ~50 ms besides (reading two small files costs next to nothing; the poll
//! catches what inotify does not report). When their content hash changes they are parsed
//! and a new [`Policy`] is swapped in as a whole. A request takes one snapshot and keeps it,
//! so during a reload each request sees either the old or the new policy, never a mix. A file
//! that fails to parse leaves the current policy in place (and says so in the log).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::EgressError;
use super::routes::RouteTable;
use super::upstream::UpstreamClient;

/// Routes file size accepted (the launcher renders a few kilobytes).
pub(crate) const MAX_ROUTES_FILE: u64 = crate::sidecar::wire::MAX_FILE_BYTES;

/// Pause between the two reads that must agree before a change is applied (a `docker cp`
/// may still be writing the routes file; the grants file is always renamed into place).
const SETTLE: Duration = Duration::from_millis(15);
/// Default poll interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(50);

/// One immutable policy generation: route table and the upstream pool that goes with it.
pub(crate) struct Policy {
    pub(crate) generation: u64,
    pub routes: Arc<RouteTable>,
    pub client: UpstreamClient,
}

/// Holder of the current policy; readers clone the `Arc`.
pub(crate) struct PolicyHandle {
    current: RwLock<Arc<Policy>>,
}

impl PolicyHandle {
    pub(crate) fn new(p: Policy) -> Self {
        PolicyHandle {
            current: RwLock::new(Arc::new(p)),
        }
    }

    pub(crate) fn current(&self) -> Arc<Policy> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn swap(&self, p: Policy) {
        let p = Arc::new(p);
        match self.current.write() {
            Ok(mut g) => *g = p,
            Err(poisoned) => *poisoned.into_inner() = p,
        }
    }
}

/// Read the routes file with a size bound.
pub(crate) fn read_routes_file(path: &Path) -> Result<String, EgressError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|source| EgressError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut text = String::new();
    f.take(MAX_ROUTES_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|source| EgressError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if text.len() as u64 > MAX_ROUTES_FILE {
        return Err(EgressError::Routes {
            path: path.to_path_buf(),
            message: "larger than 1 MiB".into(),
        });
    }
    Ok(text)
}

pub(crate) fn content_hash(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// The grants file's text; a missing file (no grant yet, or no supervise) is no grants.
pub(crate) fn read_grants_file(path: Option<&Path>) -> Result<String, EgressError> {
    match path {
        None => Ok(String::new()),
        Some(p) if !p.exists() => Ok(String::new()),
        Some(p) => read_routes_file(p),
    }
}

/// The texts of the routes file and the grants file, and their joint hash.
pub(crate) fn read_policy_files(
    routes: &Path,
    grants: Option<&Path>,
) -> Result<(String, String, u64), EgressError> {
    let r = read_routes_file(routes)?;
    let g = read_grants_file(grants)?;
    let hash = content_hash(&format!("{r}\0{g}"));
    Ok((r, g, hash))
}

/// Read the routes file (and the grants file) when inotify says one changed, and every
/// `interval` regardless; on a content change call `build` with both texts and swap the
/// result in.
pub(crate) fn spawn_watcher<F>(
    path: PathBuf,
    grants: Option<PathBuf>,
    interval: Duration,
    initial_hash: u64,
    handle: Arc<PolicyHandle>,
    build: F,
) where
    F: Fn(&str, &str, u64) -> Result<Policy, EgressError> + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let mut last_hash = initial_hash;
        // The routes text's own hash: a change of the grants file alone needs no settle read,
        // since supervise always renames it into place whole.
        let mut last_routes_hash = None;
        let mut generation = handle.current().generation;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let files: Vec<&Path> = std::iter::once(path.as_path())
            .chain(grants.as_deref())
            .collect();
        let mut wake = super::wake::Wake::new(&files);
        loop {
            let woken = match wake.as_mut() {
                Some(w) => tokio::select! {
                    _ = ticker.tick() => {
                        w.rewatch();
                        false
                    }
                    ok = w.changed() => {
                        if !ok {
                            tracing::warn!("inotify failed; policy changes are found by polling");
                            wake = None;
                        }
                        ok
                    }
                },
                None => {
                    ticker.tick().await;
                    false
                }
            };
            let (text, grants_text, hash) = match read_policy_files(&path, grants.as_deref()) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!("routes reload skipped: {e}");
                    continue;
                }
            };
            let routes_hash = content_hash(&text);
            if hash == last_hash {
                last_routes_hash = Some(routes_hash);
                continue;
            }
            // A writer of the routes file may be half-way through it: apply a routes change
            // only once it reads the same twice in a row.
            if last_routes_hash != Some(routes_hash) {
                tokio::time::sleep(SETTLE).await;
                match read_policy_files(&path, grants.as_deref()) {
                    Ok((_, _, again)) if again == hash => {}
                    _ => continue,
                }
            }
            last_hash = hash;
            last_routes_hash = Some(routes_hash);
            match build(&text, &grants_text, generation + 1) {
                Ok(policy) => {
                    generation += 1;
                    tracing::info!(
                        generation,
                        routes = policy.routes.len(),
                        woken,
                        "routes reloaded"
                    );
                    handle.swap(policy);
                }
                Err(e) => tracing::error!("routes reload refused, keeping the current routes: {e}"),
            }
        }
    });
}
