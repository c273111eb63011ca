//! Secret scanner shared by the egress proxy and the git-gate.
//!
//! Rules are our own regexes, compiled once into a `RegexSet` prefilter ([`rules`]); a scan
//! is one pass of that set over the bytes plus bounded decoding layers (percent, JSON
//! escapes, base64, hex; see `decode`). A [`Finding`] names the rule, never the value, so it
//! can be logged and returned to the agent. [`StreamScan`] scans a body as it streams with a
//! fixed-size overlap, and the test-only `Scanner::scan_gzip` decompresses with an output cap.

mod decode;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod gzip;
mod rules;
mod stream;
#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) use gzip::MAX_GZIP_OUTPUT;
pub use rules::{RuleInfo, rules};
pub(crate) use stream::STREAM_OVERLAP;
pub use stream::StreamScan;

use decode::Budget;
use rules::{COMPILED, Compiled, RULES};

/// Decoded bytes allowed per scan window (all layers and depths together).
pub(crate) const DECODE_BUDGET: usize = 4 << 20;
/// One-shot scans of larger inputs are cut into windows of this size (with overlap) so each
/// window gets its own decode budget and memory stays bounded.
pub(crate) const SCAN_WINDOW: usize = 256 << 10;
/// Decoding layers stack at most this deep (e.g. base64 of a percent-encoded value).
const MAX_DEPTH: usize = 2;

/// A match: which rule fired. Deliberately holds no part of the matched value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Stable rule id, e.g. `aws-access-key-id`.
    pub rule: &'static str,
    /// Human description, e.g. `AWS access key id`.
    pub(crate) description: &'static str,
}

/// Why a compressed body could not be scanned. Callers refuse the body in both cases.
#[cfg(test)]
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScanError {
    #[error("gzip body could not be decompressed ({0}); send a valid gzip body")]
    Gzip(String),
    #[error("gzip body expands beyond {limit} bytes; send it uncompressed or smaller")]
    TooLarge { limit: u64 },
}

/// Compiled rule set. Cheap to copy and share across connections.
#[derive(Clone, Copy)]
pub struct Scanner {
    compiled: &'static Compiled,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("rules", &RULES.len())
            .finish()
    }
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    /// The built-in rules; compiled on first use, shared afterwards.
    pub fn new() -> Self {
        Scanner {
            compiled: &COMPILED,
        }
    }

    /// Scan raw bytes (URL, header value, whole body) for a credential shape, including
    /// percent-encoded, JSON-escaped, base64 and hex forms.
    pub fn scan(&self, data: &[u8]) -> Option<Finding> {
        if data.len() <= SCAN_WINDOW + STREAM_OVERLAP {
            return self.scan_window(data, 0);
        }
        let mut stream = self.stream();
        data.chunks(SCAN_WINDOW).find_map(|c| stream.feed(c))
    }

    /// [`Scanner::scan`] for text.
    pub(crate) fn scan_str(&self, text: &str) -> Option<Finding> {
        self.scan(text.as_bytes())
    }

    /// A scanner for a body that arrives in chunks.
    pub fn stream(&self) -> StreamScan<'_> {
        StreamScan::new(self)
    }

    /// Decompress a gzip body (at most [`MAX_GZIP_OUTPUT`] bytes) and scan it.
    #[cfg(test)]
    pub(crate) fn scan_gzip(&self, data: &[u8]) -> Result<Option<Finding>, ScanError> {
        gzip::scan_gzip(self, data, MAX_GZIP_OUTPUT)
    }

    /// [`Scanner::scan_gzip`] with a caller-chosen decompressed-size limit.
    #[cfg(test)]
    pub(crate) fn scan_gzip_with_limit(
        &self,
        data: &[u8],
        limit: u64,
    ) -> Result<Option<Finding>, ScanError> {
        gzip::scan_gzip(self, data, limit)
    }

    /// Scan `hay`, reporting only matches that start at or after `start` in the raw layer
    /// (bytes before `start` are context for `\b`). Decoded layers see the whole window.
    pub(crate) fn scan_window(&self, hay: &[u8], start: usize) -> Option<Finding> {
        if let Some(f) = self.raw(hay, start) {
            return Some(f);
        }
        let mut budget = Budget::new(DECODE_BUDGET);
        let mut level = decode::decodings(hay, None, &mut budget);
        for depth in 1..=MAX_DEPTH {
            if let Some(f) = level.iter().find_map(|l| self.raw(&l.bytes, 0)) {
                return Some(f);
            }
            if depth == MAX_DEPTH || budget.exhausted() {
                break;
            }
            let mut next = Vec::new();
            for l in &level {
                next.extend(decode::decodings(&l.bytes, Some(l.kind), &mut budget));
            }
            level = next;
        }
        None
    }

    /// One pass of the rule set over `hay`; rules with a post-match check then look at their
    /// own matches. Lowest rule index wins.
    fn raw(&self, hay: &[u8], start: usize) -> Option<Finding> {
        let start = start.min(hay.len());
        let hits = self.compiled.set.matches_at(hay, start);
        for idx in hits.iter() {
            let rule = RULES.get(idx)?;
            let (Some(check), Some(Some(re))) = (rule.check, self.compiled.checked.get(idx)) else {
                return Some(finding(rule));
            };
            let mut pos = start;
            while pos <= hay.len() {
                let Some(caps) = re.captures_at(hay, pos) else {
                    break;
                };
                let Some(whole) = caps.get(0) else { break };
                let value = caps.get(1).unwrap_or(whole);
                if check(value.as_bytes()) {
                    return Some(finding(rule));
                }
                pos = whole.end().max(whole.start() + 1);
            }
        }
        None
    }
}

fn finding(rule: &rules::RuleDef) -> Finding {
    Finding {
        rule: rule.info.id,
        description: rule.info.description,
    }
}
