//! Scanning what a push adds: every new commit of the pushed range, not only the tip.
//!
//! New commits are `rev-list <new…> --not --all` (everything the mirror, i.e. the upstream as
//! last synced, does not already have). For each: the whole commit object (message and
//! headers), the name of every path it touches, and the lines it adds against its first
//! parent (`diff-tree --text`, so no attribute can hide a file as binary, and no textconv or
//! external diff runs). Lines added to one file are joined back into one buffer, so a secret
//! split over lines stays in one scan; compressed blobs are decompressed (bounded) and
//! scanned again. Annotated tag objects are scanned whole. The scanner is egress's.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use crate::scan::{Finding, Scanner};

use super::GateError;

/// Binary blobs up to this size are read whole and decompressed when they look compressed.
pub(crate) const MAX_DECODED_BLOB: u64 = 8 << 20;
/// Decompressed output allowed per blob.
pub(crate) const MAX_INFLATED: u64 = 32 << 20;

/// Where in a push the scanner fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    CommitMessage,
    TagMessage,
    FileName,
    Added(String),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::CommitMessage => write!(f, "the commit message"),
            Place::TagMessage => write!(f, "the tag message"),
            // The name itself holds the secret: say which commit, not the name.
            Place::FileName => write!(f, "a file name it adds"),
            Place::Added(p) => write!(f, "{p}"),
        }
    }
}

/// A hit: rule, commit (or tag object) id and place. Never the matched value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PushFinding {
    pub(crate) finding: Finding,
    pub(crate) object: String,
    pub place: Place,
}

impl std::fmt::Display for PushFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}) in commit {}, {}",
            self.finding.rule, self.finding.description, self.object, self.place
        )
    }
}

/// Runs git in the repo receiving the push (the hook's environment, quarantine included).
pub(crate) struct RangeScan<'a> {
    pub git: &'a str,
    pub scanner: Scanner,
}

impl RangeScan<'_> {
    fn cmd(&self) -> Command {
        let mut c = Command::new(self.git);
        // Repo-local config could otherwise change how diffs are rendered.
        c.args([
            "-c",
            "core.quotePath=true",
            "-c",
            "diff.noprefix=false",
            "-c",
            "diff.mnemonicPrefix=false",
            "-c",
            "core.attributesFile=/dev/null",
        ]);
        c
    }

    fn output(&self, args: &[&str], what: &str) -> Result<Vec<u8>, GateError> {
        let out = self
            .cmd()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| GateError::Spawn {
                program: self.git.to_string(),
                source,
            })?;
        if !out.status.success() {
            return Err(GateError::Git {
                what: what.to_string(),
                stderr: super::upstream::last_line(&out.stderr),
            });
        }
        Ok(out.stdout)
    }

    /// Commits reachable from `news` and not yet in the mirror, oldest first.
    pub(crate) fn new_commits(&self, news: &[String]) -> Result<Vec<String>, GateError> {
        if news.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["rev-list", "--reverse", "--topo-order"];
        args.extend(news.iter().map(String::as_str));
        args.extend(["--not", "--all"]);
        let out = self.output(&args, "git rev-list")?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// Scan the commits and any annotated tags among `news`. First finding wins.
    pub(crate) fn scan(&self, news: &[String]) -> Result<Option<PushFinding>, GateError> {
        for n in news {
            let kind = self.output(&["cat-file", "-t", n], "git cat-file -t")?;
            if kind.trim_ascii() == b"tag" {
                let body = self.output(&["cat-file", "tag", n], "git cat-file tag")?;
                if let Some(f) = self.scanner.scan(&body) {
                    return Ok(Some(PushFinding {
                        finding: f,
                        object: n.clone(),
                        place: Place::TagMessage,
                    }));
                }
            }
        }
        let commits = self.new_commits(news)?;
        if commits.is_empty() {
            return Ok(None);
        }
        if let Some(f) = self.scan_messages(&commits)? {
            return Ok(Some(f));
        }
        self.scan_diffs(&commits)
    }

    fn scan_messages(&self, commits: &[String]) -> Result<Option<PushFinding>, GateError> {
        let input = commits.join("\n") + "\n";
        let out = self.piped(
            &["cat-file", "--batch"],
            input.into_bytes(),
            "git cat-file --batch",
        )?;
        let mut rest = &out[..];
        for c in commits {
            let nl = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let header = String::from_utf8_lossy(&rest[..nl]).to_string();
            let size: usize = header
                .rsplit(' ')
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| GateError::Git {
                    what: "git cat-file --batch".into(),
                    stderr: format!("unexpected header `{header}`"),
                })?;
            let body_start = (nl + 1).min(rest.len());
            let body_end = (body_start + size).min(rest.len());
            if let Some(f) = self.scanner.scan(&rest[body_start..body_end]) {
                return Ok(Some(PushFinding {
                    finding: f,
                    object: c.clone(),
                    place: Place::CommitMessage,
                }));
            }
            rest = &rest[(body_end + 1).min(rest.len())..];
        }
        Ok(None)
    }

    fn piped(&self, args: &[&str], input: Vec<u8>, what: &str) -> Result<Vec<u8>, GateError> {
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| GateError::Spawn {
                program: self.git.to_string(),
                source,
            })?;
        let mut stdin = child.stdin.take();
        let writer = std::thread::spawn(move || {
            if let Some(s) = stdin.as_mut() {
                let _ = s.write_all(&input);
            }
        });
        let out = child
            .wait_with_output()
            .map_err(|source| GateError::Spawn {
                program: self.git.to_string(),
                source,
            })?;
        let _ = writer.join();
        if !out.status.success() {
            return Err(GateError::Git {
                what: what.into(),
                stderr: super::upstream::last_line(&out.stderr),
            });
        }
        Ok(out.stdout)
    }

    fn scan_diffs(&self, commits: &[String]) -> Result<Option<PushFinding>, GateError> {
        let mut child = self
            .cmd()
            .args([
                "diff-tree",
                "--stdin",
                "-r",
                "-p",
                "--root",
                "--no-renames",
                "--text",
                "--no-ext-diff",
                "--no-textconv",
                "--full-index",
                "--no-color",
                "--diff-merges=first-parent",
                "--src-prefix=a/",
                "--dst-prefix=b/",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| GateError::Spawn {
                program: self.git.to_string(),
                source,
            })?;
        let input = commits.join("\n") + "\n";
        let mut stdin = child.stdin.take();
        let writer = std::thread::spawn(move || {
            if let Some(s) = stdin.as_mut() {
                let _ = s.write_all(input.as_bytes());
            }
        });
        let mut stderr = child.stderr.take();
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(e) = stderr.as_mut() {
                let _ = e.read_to_end(&mut buf);
            }
            buf
        });
        let stdout = child.stdout.take().ok_or_else(|| GateError::Git {
            what: "git diff-tree".into(),
            stderr: "no stdout".into(),
        })?;
        let mut parser = DiffParser::new(self);
        let result = parser.run(BufReader::with_capacity(1 << 16, stdout));
        if result.as_ref().is_ok_and(Option::is_some) {
            let _ = child.kill();
        }
        let status = child.wait().map_err(|source| GateError::Spawn {
            program: self.git.to_string(),
            source,
        })?;
        let _ = writer.join();
        let err = err_reader.join().unwrap_or_default();
        let found = result?;
        if found.is_some() {
            return Ok(found);
        }
        if !status.success() {
            return Err(GateError::Git {
                what: "git diff-tree".into(),
                stderr: super::upstream::last_line(&err),
            });
        }
        Ok(None)
    }

    /// A blob the diff showed as binary or compressed: read it whole and scan what it inflates to.
    fn scan_blob(&self, oid: &str) -> Result<Option<Finding>, GateError> {
        let size = self.output(&["cat-file", "-s", oid], "git cat-file -s")?;
        let size: u64 = String::from_utf8_lossy(&size)
            .trim()
            .parse()
            .unwrap_or(u64::MAX);
        if size > MAX_DECODED_BLOB {
            return Ok(None);
        }
        let blob = self.output(&["cat-file", "blob", oid], "git cat-file blob")?;
        Ok(scan_inflated(&self.scanner, &blob))
    }
}

/// Scan `data` and, when it is gzip or zlib, what it decompresses to (bounded).
pub(crate) fn scan_inflated(scanner: &Scanner, data: &[u8]) -> Option<Finding> {
    if let Some(f) = scanner.scan(data) {
        return Some(f);
    }
    let inflated = match data {
        [0x1f, 0x8b, ..] => inflate(flate2::read::MultiGzDecoder::new(data)),
        [0x78, 0x01 | 0x5e | 0x9c | 0xda, ..] => inflate(flate2::read::ZlibDecoder::new(data)),
        _ => None,
    }?;
    scanner.scan(&inflated)
}

fn inflate(r: impl Read) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    // A truncated or corrupt stream still yields what decoded before the error.
    let _ = r.take(MAX_INFLATED).read_to_end(&mut out);
    (!out.is_empty()).then_some(out)
}

fn looks_binary(data: &[u8]) -> bool {
    data[..data.len().min(8000)].contains(&0)
        || matches!(
            data,
            [0x1f, 0x8b, ..] | [0x78, 0x01 | 0x5e | 0x9c | 0xda, ..]
        )
}

/// State of the `diff-tree --stdin -p` reader.
struct DiffParser<'s, 'a> {
    scan: &'s RangeScan<'a>,
    commit: String,
    /// Path of the file being read (post-image, or pre-image for a deletion).
    path: Option<String>,
    new_blob: Option<String>,
    in_hunk: bool,
    added: Vec<u8>,
}

impl<'s, 'a> DiffParser<'s, 'a> {
    fn new(scan: &'s RangeScan<'a>) -> Self {
        DiffParser {
            scan,
            commit: String::new(),
            path: None,
            new_blob: None,
            in_hunk: false,
            added: Vec::new(),
        }
    }

    fn run(&mut self, mut r: impl BufRead) -> Result<Option<PushFinding>, GateError> {
        let mut line = Vec::with_capacity(256);
        loop {
            line.clear();
            let n = r
                .read_until(b'\n', &mut line)
                .map_err(|source| GateError::Spawn {
                    program: "git diff-tree".into(),
                    source,
                })?;
            if n == 0 {
                return self.finish_file();
            }
            if self.in_hunk {
                match line.first() {
                    Some(b'+') => {
                        self.added.extend_from_slice(&line[1..]);
                        continue;
                    }
                    Some(b' ' | b'-') => continue,
                    Some(b'\\') => {
                        // "\ No newline at end of file": the last line had no newline.
                        if self.added.last() == Some(&b'\n') {
                            self.added.pop();
                        }
                        continue;
                    }
                    Some(b'@') => continue,
                    _ => {}
                }
            }
            if let Some(f) = self.header(&line)? {
                return Ok(Some(f));
            }
        }
    }

    fn header(&mut self, line: &[u8]) -> Result<Option<PushFinding>, GateError> {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\n');
        if let Some(oid) = commit_line(text) {
            let f = self.finish_file()?;
            self.commit = oid.to_string();
            return Ok(f);
        }
        if text.starts_with("diff --git ") {
            let f = self.finish_file()?;
            self.in_hunk = false;
            return Ok(f);
        }
        if text.starts_with("@@") {
            self.in_hunk = true;
        } else if let Some(idx) = text.strip_prefix("index ") {
            let range = idx.split(' ').next().unwrap_or("");
            self.new_blob = range
                .split_once("..")
                .map(|(_, n)| n.to_string())
                .filter(|n| !super::policy::is_zero_oid(n));
        } else if let Some(p) = text.strip_prefix("+++ ") {
            if p != "/dev/null" {
                self.path = Some(unprefix(p, "b/"));
            }
        } else if let Some(p) = text.strip_prefix("--- ") {
            if p != "/dev/null" {
                self.path = Some(unprefix(p, "a/"));
            }
        }
        Ok(None)
    }

    /// Scan the file just read: its name, its added bytes, and its blob when it is binary.
    fn finish_file(&mut self) -> Result<Option<PushFinding>, GateError> {
        let Some(path) = self.path.take() else {
            self.added.clear();
            self.new_blob = None;
            return Ok(None);
        };
        let added = std::mem::take(&mut self.added);
        let blob = self.new_blob.take();
        let hit = |finding, place| {
            Some(PushFinding {
                finding,
                object: self.commit.clone(),
                place,
            })
        };
        if let Some(f) = self.scan.scanner.scan_str(&path) {
            return Ok(hit(f, Place::FileName));
        }
        if let Some(f) = self.scan.scanner.scan(&added) {
            return Ok(hit(f, Place::Added(path)));
        }
        if looks_binary(&added) {
            if let Some(f) = scan_inflated(&self.scan.scanner, &added) {
                return Ok(hit(f, Place::Added(path)));
            }
            if let Some(oid) = blob {
                if let Some(f) = self.scan.scan_blob(&oid)? {
                    return Ok(hit(f, Place::Added(path)));
                }
            }
        }
        Ok(None)
    }
}

/// `diff-tree --stdin` starts each commit with its id alone on a line (merges: `id (from p)`).
fn commit_line(text: &str) -> Option<&str> {
    let id = text.split(' ').next()?;
    let rest = &text[id.len()..];
    ((id.len() == 40 || id.len() == 64)
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && (rest.is_empty() || rest.starts_with(" (from ")))
    .then_some(id)
}

/// `b/path` or a C-quoted `"b/pa\th"` → the path as text (quoted bytes kept escaped).
fn unprefix(p: &str, prefix: &str) -> String {
    let unquoted = p
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(p);
    unquoted
        .strip_prefix(prefix)
        .unwrap_or(unquoted)
        .chars()
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_lines_are_recognised_and_content_is_not() {
        let id = "a".repeat(40);
        assert_eq!(commit_line(&id), Some(id.as_str()));
        assert_eq!(
            commit_line(&format!("{id} (from {})", "b".repeat(40))),
            Some(id.as_str())
        );
        assert_eq!(commit_line(&format!("{id}x")), None);
        assert_eq!(commit_line("diff --git a/x b/x"), None);
    }

    #[test]
    fn paths_lose_their_prefix_and_quotes() {
        assert_eq!(unprefix("b/src/x.rs", "b/"), "src/x.rs");
        assert_eq!(unprefix("\"b/a\\tb\"", "b/"), "a\\tb");
    }

    #[test]
    fn compressed_blobs_are_inflated_and_scanned() {
        use std::io::Write as _;
        let secret = b"key = AKIAQWERTYUIOPASDFGH\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(secret).unwrap();
        let gz = gz.finish().unwrap();
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(secret).unwrap();
        let z = z.finish().unwrap();
        let s = Scanner::new();
        assert_eq!(scan_inflated(&s, &gz).unwrap().rule, "aws-access-key-id");
        assert_eq!(scan_inflated(&s, &z).unwrap().rule, "aws-access-key-id");
        assert!(scan_inflated(&s, b"\x1f\x8bgarbage").is_none());
    }
}
