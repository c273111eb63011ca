//! Scanning a body chunk by chunk with bounded memory.
//!
//! Each chunk is scanned together with the last [`STREAM_OVERLAP`] bytes of what came before,
//! so a secret (or its encoding) up to that length is found even when a chunk boundary cuts
//! through it. Memory held between chunks is that tail, nothing more.

use super::{Finding, SCAN_WINDOW, Scanner};

/// Longest secret (raw or encoded) guaranteed to be found across a chunk boundary.
pub(crate) const STREAM_OVERLAP: usize = 4096;
/// Extra bytes kept before the overlap only as context for word-boundary checks.
const CONTEXT: usize = 16;

/// Streaming scan of one body. Once a finding is returned, every later `feed` returns it
/// again: the body is already condemned.
#[derive(Debug)]
pub struct StreamScan<'a> {
    scanner: &'a Scanner,
    /// Tail of the previous input, then the current chunk while it is being scanned.
    buf: Vec<u8>,
    found: Option<Finding>,
}

impl<'a> StreamScan<'a> {
    pub(crate) fn new(scanner: &'a Scanner) -> Self {
        StreamScan {
            scanner,
            buf: Vec::new(),
            found: None,
        }
    }

    /// Scan the next chunk. Cost is linear in `chunk.len()` plus the fixed overlap.
    pub fn feed(&mut self, chunk: &[u8]) -> Option<Finding> {
        if let Some(f) = &self.found {
            return Some(f.clone());
        }
        for piece in chunk.chunks(SCAN_WINDOW) {
            let start = self.buf.len().saturating_sub(STREAM_OVERLAP);
            self.buf.extend_from_slice(piece);
            if let Some(f) = self.scanner.scan_window(&self.buf, start) {
                self.found = Some(f.clone());
                self.buf = Vec::new();
                return Some(f);
            }
            let cut = self.buf.len().saturating_sub(STREAM_OVERLAP + CONTEXT);
            self.buf.drain(..cut);
        }
        if self.buf.capacity() > 4 * (STREAM_OVERLAP + CONTEXT) {
            self.buf.shrink_to(2 * (STREAM_OVERLAP + CONTEXT));
        }
        None
    }

    /// The finding, if any chunk so far held a secret.
    #[cfg(test)]
    pub(crate) fn finding(&self) -> Option<&Finding> {
        self.found.as_ref()
    }

    /// Bytes held between chunks (at most the overlap plus a few context bytes).
    #[cfg(test)]
    pub(crate) fn retained_len(&self) -> usize {
        self.buf.len()
    }
}
