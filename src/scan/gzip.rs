//! Scanning gzip bodies without trusting their declared or apparent size.
//!
//! Decompression feeds a [`StreamScan`](super::StreamScan) in fixed blocks and stops as soon as
//! the output passes the limit, so a small "bomb" costs at most `limit` bytes of work and
//! one block of memory.

use std::io::Read;

use flate2::read::MultiGzDecoder;

use super::{Finding, ScanError, Scanner};

/// Default cap on decompressed bytes for [`Scanner::scan_gzip`].
pub(crate) const MAX_GZIP_OUTPUT: u64 = 32 << 20;
const BLOCK: usize = 64 << 10;

pub(crate) fn scan_gzip(
    scanner: &Scanner,
    data: &[u8],
    limit: u64,
) -> Result<Option<Finding>, ScanError> {
    let mut decoder = MultiGzDecoder::new(data);
    let mut stream = scanner.stream();
    let mut block = vec![0u8; BLOCK];
    let mut total: u64 = 0;
    loop {
        let n = match decoder.read(&mut block) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ScanError::Gzip(e.to_string())),
        };
        if n == 0 {
            return Ok(None);
        }
        // Scan what fits under the limit first: a secret there is the better answer.
        let room = usize::try_from(limit.saturating_sub(total)).unwrap_or(usize::MAX);
        let within = n.min(room);
        if let Some(f) = stream.feed(&block[..within]) {
            return Ok(Some(f));
        }
        total = total.saturating_add(n as u64);
        if total > limit {
            return Err(ScanError::TooLarge { limit });
        }
    }
}
