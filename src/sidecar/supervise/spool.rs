//! The bundle-side spool: proposals waiting for the operator, and the operator's decisions.
//!
//! The host shares no directory with the bundle, so the host reads proposals and hands back
//! decisions through the engine (`bot-bottle-supervise ctl …` run with `docker exec`). Both
//! sides use the types below (unknown fields refused). Files are written whole to a temporary
//! name and renamed, so a reader never sees half a file; a decision is linked into place, so
//! a request is decided once even if two operators race.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::SuperviseError;
use super::validate::RouteProposal;

/// Most undecided requests one bottle may have; more are refused until some are decided.
pub(crate) const MAX_PENDING: usize = 32;
/// Largest spool file read back (a Dockerfile request is the largest, 64 KiB plus framing).
const MAX_FILE: u64 = 128 * 1024;
/// How often a waiter looks for its decision.
const WAIT_POLL: Duration = Duration::from_millis(20);

/// What is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Change {
    /// A new egress route (or a wider one).
    Route(RouteProposal),
    /// A new image for this bottle.
    Image { dockerfile: String },
}

/// One request from the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub id: String,
    /// RFC 3339, UTC.
    pub(crate) created_at: String,
    pub change: Change,
    pub reason: String,
}

/// The operator's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Approved,
    Rejected,
}

/// How long an approved route stays live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lifetime {
    /// The next matching request only.
    Once,
    /// This many seconds from the approval.
    Seconds(u64),
    /// Until the bottle ends.
    Session,
    /// Saved to the bottle file (and live until the bottle ends).
    Saved,
}

/// A decision on one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub id: String,
    pub verdict: Verdict,
    /// RFC 3339, UTC.
    pub decided_at: String,
    /// Lifetime of an approved route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<Lifetime>,
    /// The route as approved (the operator may have edited it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteProposal>,
    /// The operator's words to the agent (a rejection reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A request id: `<13-digit unix ms>-<6 hex>`, so ids sort oldest first and are safe as file
/// names.
pub(crate) fn is_request_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b[..13].iter().all(u8::is_ascii_digit)
        && b[13] == b'-'
        && b[14..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// Current time as RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn new_id() -> String {
    use rand::RngExt as _;
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let r: u32 = rand::rng().random_range(0..0x100_0000);
    format!("{ms:013}-{r:06x}")
}

/// The spool directory: `requests/<id>.json` and `decisions/<id>.json`.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Open (and create) the spool under `dir`.
    pub fn open(dir: &Path) -> Result<Self, SuperviseError> {
        for sub in ["requests", "decisions"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(|source| SuperviseError::Io { path: p, source })?;
        }
        Ok(Spool {
            dir: dir.to_path_buf(),
        })
    }

    fn request_path(&self, id: &str) -> PathBuf {
        self.dir.join("requests").join(format!("{id}.json"))
    }

    fn decision_path(&self, id: &str) -> PathBuf {
        self.dir.join("decisions").join(format!("{id}.json"))
    }

    /// Queue a validated change; refused when too many are already waiting.
    pub fn submit(&self, change: Change, reason: String) -> Result<Request, SuperviseError> {
        let waiting = self.pending()?.len();
        if waiting >= MAX_PENDING {
            return Err(SuperviseError::TooManyPending { waiting });
        }
        let req = Request {
            id: new_id(),
            created_at: now_rfc3339(),
            change,
            reason,
        };
        let body = serde_json::to_vec_pretty(&req).map_err(SuperviseError::Encode)?;
        write_atomic(&self.request_path(&req.id), &body, false)?;
        Ok(req)
    }

    /// One request by id.
    pub fn request(&self, id: &str) -> Result<Option<Request>, SuperviseError> {
        if !is_request_id(id) {
            return Err(SuperviseError::BadId(id.chars().take(40).collect()));
        }
        read_json(&self.request_path(id))
    }

    /// The decision on `id`, if any.
    pub fn decision(&self, id: &str) -> Result<Option<Decision>, SuperviseError> {
        if !is_request_id(id) {
            return Err(SuperviseError::BadId(id.chars().take(40).collect()));
        }
        read_json(&self.decision_path(id))
    }

    /// Every request, oldest first.
    pub fn requests(&self) -> Result<Vec<Request>, SuperviseError> {
        let dir = self.dir.join("requests");
        let rd = fs::read_dir(&dir).map_err(|source| SuperviseError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut ids: Vec<String> = rd
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let id = name.strip_suffix(".json")?;
                is_request_id(id).then(|| id.to_string())
            })
            .collect();
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = read_json(&self.request_path(&id))? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Requests without a decision, oldest first.
    pub fn pending(&self) -> Result<Vec<Request>, SuperviseError> {
        Ok(self
            .requests()?
            .into_iter()
            .filter(|r| !self.decision_path(&r.id).exists())
            .collect())
    }

    /// Record a decision; a request is decided once.
    pub fn decide(&self, d: &Decision) -> Result<(), SuperviseError> {
        if self.request(&d.id)?.is_none() {
            return Err(SuperviseError::UnknownRequest(d.id.clone()));
        }
        let body = serde_json::to_vec_pretty(d).map_err(SuperviseError::Encode)?;
        write_atomic(&self.decision_path(&d.id), &body, true).map_err(|e| match e {
            SuperviseError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                SuperviseError::AlreadyDecided(d.id.clone())
            }
            other => other,
        })
    }

    /// Wait up to `timeout` for the decision on `id`; `None` when it is still pending.
    pub async fn wait(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<Decision>, SuperviseError> {
        if self.request(id)?.is_none() {
            return Err(SuperviseError::UnknownRequest(id.to_string()));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(d) = self.decision(id)? {
                return Ok(Some(d));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }
}

/// Write `body` to a temporary file beside `path`, then move it into place. With
/// `exclusive`, an existing `path` is an `AlreadyExists` error instead of being replaced.
pub(crate) fn write_atomic(
    path: &Path,
    body: &[u8],
    exclusive: bool,
) -> Result<(), SuperviseError> {
    write_renamed(path, body, exclusive, true)
}

/// Write `path` whole beside it and rename it into place; `durable` syncs it to disk first.
/// A file rendered from others (egress's grants file) skips the sync: readers only need the
/// rename, and after a crash the next render writes it again.
pub(crate) fn write_renamed(
    path: &Path,
    body: &[u8],
    exclusive: bool,
    durable: bool,
) -> Result<(), SuperviseError> {
    let io = |source| SuperviseError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(body).map_err(io)?;
    if durable {
        tmp.as_file().sync_all().map_err(io)?;
    }
    if exclusive {
        tmp.persist_noclobber(path).map_err(|e| io(e.error))?;
    } else {
        tmp.persist(path).map_err(|e| io(e.error))?;
    }
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, SuperviseError> {
    use std::io::Read;
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SuperviseError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut buf = Vec::new();
    f.take(MAX_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|source| SuperviseError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if buf.len() as u64 > MAX_FILE {
        return Err(SuperviseError::Corrupt {
            path: path.to_path_buf(),
            message: "larger than 128 KiB".into(),
        });
    }
    serde_json::from_slice(&buf)
        .map(Some)
        .map_err(|e| SuperviseError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: &str) -> Change {
        Change::Route(RouteProposal {
            host: host.into(),
            path_prefixes: vec![],
            methods: vec![],
        })
    }

    fn approve(id: &str) -> Decision {
        Decision {
            id: id.into(),
            verdict: Verdict::Approved,
            decided_at: now_rfc3339(),
            lifetime: Some(Lifetime::Once),
            route: None,
            note: None,
        }
    }

    #[test]
    fn ids_sort_and_are_checked() {
        let a = new_id();
        assert!(is_request_id(&a), "{a}");
        assert!(!is_request_id("../../etc/passwd"));
        assert!(!is_request_id("0000000000000-ABCDEF"));
    }

    #[test]
    fn submit_then_decide_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path()).unwrap();
        let r1 = s.submit(route("a.test"), "why".into()).unwrap();
        let r2 = s
            .submit(
                Change::Image {
                    dockerfile: "FROM x".into(),
                },
                "why".into(),
            )
            .unwrap();
        let pending: Vec<_> = s.pending().unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(pending.len(), 2);
        assert!(pending.contains(&r1.id) && pending.contains(&r2.id));
        s.decide(&approve(&r1.id)).unwrap();
        assert!(matches!(
            s.decide(&approve(&r1.id)),
            Err(SuperviseError::AlreadyDecided(_))
        ));
        let pending: Vec<_> = s.pending().unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(pending, vec![r2.id.clone()]);
        assert!(matches!(
            s.decide(&approve("0000000000000-000000")),
            Err(SuperviseError::UnknownRequest(_))
        ));
        // What was written reads back as the same value.
        assert_eq!(s.request(&r2.id).unwrap().unwrap(), r2);
    }

    #[test]
    fn pending_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path()).unwrap();
        for _ in 0..MAX_PENDING {
            s.submit(route("a.test"), "r".into()).unwrap();
        }
        assert!(matches!(
            s.submit(route("a.test"), "r".into()),
            Err(SuperviseError::TooManyPending { .. })
        ));
    }

    #[test]
    fn wire_refuses_unknown_fields() {
        let ok = r#"{"id":"0000000000001-00000a","created_at":"t","change":{"kind":"route","host":"a.test"},"reason":"r"}"#;
        let r: Request = serde_json::from_str(ok).unwrap();
        assert_eq!(r.change, route("a.test"));
        let extra = ok.replace("\"reason\"", "\"admin\":true,\"reason\"");
        assert!(serde_json::from_str::<Request>(&extra).is_err());
        let inner = ok.replace("\"host\"", "\"port\":1,\"host\"");
        assert!(serde_json::from_str::<Request>(&inner).is_err());
        let d = r#"{"id":"0000000000001-00000a","verdict":"approved","decided_at":"t","lifetime":{"seconds":60}}"#;
        let d: Decision = serde_json::from_str(d).unwrap();
        assert_eq!(d.lifetime, Some(Lifetime::Seconds(60)));
    }

    #[tokio::test]
    async fn wait_returns_the_decision_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path()).unwrap();
        let r = s.submit(route("a.test"), "why".into()).unwrap();
        assert_eq!(
            s.wait(&r.id, Duration::from_millis(30)).await.unwrap(),
            None
        );
        let s2 = s.clone();
        let id = r.id.clone();
        let waiter = tokio::spawn(async move { s2.wait(&id, Duration::from_secs(30)).await });
        s.decide(&approve(&r.id)).unwrap();
        let got = waiter.await.unwrap().unwrap().unwrap();
        assert_eq!(got.verdict, Verdict::Approved);
    }
}
