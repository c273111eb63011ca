//! Decoding layers: views of the input in which an encoded secret becomes plain again.
//!
//! Every decoder is total (garbage in, garbage bytes out, never an error) and produces at most
//! as many bytes as it reads, and every call is charged to a [`Budget`], so the work for one
//! scan window stays linear and capped however the input is shaped.

/// Shortest base64 run worth decoding: 18 bytes of plain text, below every rule's length.
pub(crate) const MIN_BASE64_RUN: usize = 24;
/// Shortest hex run worth decoding: 16 bytes of plain text.
pub(crate) const MIN_HEX_RUN: usize = 32;

/// Decoded bytes still allowed for one scan window.
#[derive(Debug)]
pub(crate) struct Budget {
    left: usize,
}

impl Budget {
    pub(crate) fn new(bytes: usize) -> Self {
        Budget { left: bytes }
    }

    /// Reserve `n` bytes of output; false when the budget cannot cover them.
    fn take(&mut self, n: usize) -> bool {
        if n > self.left {
            self.left = 0;
            return false;
        }
        self.left -= n;
        true
    }

    pub(crate) fn exhausted(&self) -> bool {
        self.left == 0
    }
}

/// What produced a decoded buffer; decides which layers apply to it next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Percent and JSON escapes resolved; its base64/hex runs were decoded at the same level.
    Unescaped,
    /// Text recovered from base64/hex runs.
    Runs,
}

/// One decoded view of a scan window.
#[derive(Debug)]
pub(crate) struct Layer {
    pub bytes: Vec<u8>,
    pub kind: Kind,
}

/// One level of decodings of `data` (produced as `kind`, or the raw input when `None`).
///
/// Percent and JSON escapes are resolved in one pass into one copy (only when the input holds
/// an escape). Base64 and hex runs of that copy (or of the input when nothing was escaped) are
/// decoded at every alignment, because a run often starts with bytes that are not part of the
/// encoded value (`/upload/QUtJ...`); the printable results share one NUL-separated buffer so
/// one scan covers them all. An `Unescaped` buffer only gets unescaped again next level (for
/// double encoding): its runs were already decoded.
pub(crate) fn decodings(data: &[u8], kind: Option<Kind>, budget: &mut Budget) -> Vec<Layer> {
    let mut out = Vec::new();
    if let Some(bytes) = inflate_embedded(data, budget) {
        out.push(Layer {
            bytes,
            kind: Kind::Runs,
        });
    }
    let unescaped = (has_escape(data) && budget.take(data.len())).then(|| unescape(data));
    if kind != Some(Kind::Unescaped) {
        let runs = encoded_runs(unescaped.as_deref().unwrap_or(data), budget);
        if !runs.is_empty() {
            out.push(Layer {
                bytes: runs,
                kind: Kind::Runs,
            });
        }
    }
    if let Some(bytes) = unescaped {
        out.push(Layer {
            bytes,
            kind: Kind::Unescaped,
        });
    }
    out
}

fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

fn hex_val(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

fn is_percent_escape(data: &[u8], i: usize) -> bool {
    data[i] == b'%' && data.len() > i + 2 && is_hex(data[i + 1]) && is_hex(data[i + 2])
}

fn is_json_escape(data: &[u8], i: usize) -> bool {
    data[i] == b'\\'
        && matches!(
            data.get(i + 1),
            Some(b'u' | b'/' | b'"' | b'\\' | b'\n' | b'\r')
        )
}

fn has_escape(data: &[u8]) -> bool {
    (0..data.len()).any(|i| is_percent_escape(data, i) || is_json_escape(data, i))
}

fn hex4(data: &[u8], at: usize) -> Option<u32> {
    let digits = data.get(at..at + 4)?;
    if !digits.iter().all(|&b| is_hex(b)) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u32, |acc, &b| acc << 4 | u32::from(hex_val(b))),
    )
}

/// Resolve `%XX` (URL, query, form) and JSON string escapes (`\u0041`, surrogate pairs, `\/`,
/// `\n`, ...) in one pass; other bytes pass through, so a whole body is unescaped at once.
/// `+` is left alone: form encoding sends a literal `+` as `%2B`, and keeping `+` keeps
/// base64 values intact.
pub(crate) fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if is_percent_escape(data, i) {
            out.push(hex_val(data[i + 1]) << 4 | hex_val(data[i + 2]));
            i += 3;
        } else if data[i] == b'\\' && i + 1 < data.len() {
            i += json_escape(data, i, &mut out);
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// Decode the JSON escape at `data[i]` (a backslash) into `out`; returns bytes consumed.
fn json_escape(data: &[u8], i: usize, out: &mut Vec<u8>) -> usize {
    // A line continuation (`\` at the end of a line) joins the lines: a value split that way
    // (shell, C, a diff's added lines with their `+`) is one value again.
    let continued = match (data.get(i + 1), data.get(i + 2)) {
        (Some(b'\n'), _) => Some(2),
        (Some(b'\r'), Some(b'\n')) => Some(3),
        _ => None,
    };
    if let Some(mut used) = continued {
        if data.get(i + used) == Some(&b'+') {
            used += 1;
        }
        return used;
    }
    let simple = match data.get(i + 1) {
        Some(b'/') => Some(b'/'),
        Some(b'"') => Some(b'"'),
        Some(b'\\') => Some(b'\\'),
        Some(b'n') => Some(b'\n'),
        Some(b'r') => Some(b'\r'),
        Some(b't') => Some(b'\t'),
        Some(b'b') => Some(0x08),
        Some(b'f') => Some(0x0c),
        _ => None,
    };
    if let Some(b) = simple {
        out.push(b);
        return 2;
    }
    let Some(unit) = (data.get(i + 1) == Some(&b'u'))
        .then(|| hex4(data, i + 2))
        .flatten()
    else {
        out.push(data[i]);
        return 1;
    };
    let mut used = 6;
    let mut code = unit;
    let j = i + 6;
    let low = (data.get(j) == Some(&b'\\') && data.get(j + 1) == Some(&b'u'))
        .then(|| hex4(data, j + 2))
        .flatten();
    if let Some(low) = low {
        if (0xD800..0xDC00).contains(&unit) && (0xDC00..0xE000).contains(&low) {
            code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
            used += 6;
        }
    }
    let ch = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
    let mut buf = [0u8; 4];
    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    used
}

/// 6-bit value of a base64 character, accepting both the standard and the URL-safe alphabet.
fn b64_val(b: u8) -> Option<u8> {
    let v = B64[usize::from(b)];
    (v != INVALID).then_some(v)
}

const INVALID: u8 = 0xff;

/// Lookup table: 6-bit value per byte, `INVALID` outside both alphabets.
static B64: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 26 {
        t[b'A' as usize + i] = i as u8;
        t[b'a' as usize + i] = 26 + i as u8;
        if i < 10 {
            t[b'0' as usize + i] = 52 + i as u8;
        }
        i += 1;
    }
    t[b'+' as usize] = 62;
    t[b'-' as usize] = 62;
    t[b'/' as usize] = 63;
    t[b'_' as usize] = 63;
    t
};

/// Lookup table: printable ASCII plus tab, CR, LF.
static TEXT: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = b' ';
    while i <= b'~' {
        t[i as usize] = true;
        i += 1;
    }
    t[b'\t' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'\r' as usize] = true;
    t
};

/// Decode base64 (either alphabet, padding optional) until the first non-alphabet byte.
pub(crate) fn base64_lenient(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 4 * 3 + 2);
    base64_into(data, &mut out);
    out
}

fn base64_into(data: &[u8], out: &mut Vec<u8>) {
    let valid = data.iter().position(|&b| B64[usize::from(b)] == INVALID);
    let data = &data[..valid.unwrap_or(data.len())];
    out.reserve(data.len() / 4 * 3 + 2);
    let mut quads = data.chunks_exact(4);
    for q in &mut quads {
        let v = u32::from(B64[usize::from(q[0])]) << 18
            | u32::from(B64[usize::from(q[1])]) << 12
            | u32::from(B64[usize::from(q[2])]) << 6
            | u32::from(B64[usize::from(q[3])]);
        out.extend_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
    }
    let rest = quads.remainder();
    let mut v: u32 = 0;
    for &b in rest {
        v = v << 6 | u32::from(B64[usize::from(b)]);
    }
    match rest.len() {
        2 => out.push((v >> 4) as u8),
        3 => out.extend_from_slice(&[(v >> 10) as u8, (v >> 2) as u8]),
        _ => {}
    }
}

fn hex_into(data: &[u8], out: &mut Vec<u8>) {
    for pair in data.chunks_exact(2) {
        out.push(hex_val(pair[0]) << 4 | hex_val(pair[1]));
    }
}

/// Shortest stretch of text kept from a decoded run; every rule needs more than this.
const MIN_TEXT: usize = 16;

/// Append the printable-ASCII stretches of `decoded` (each followed by a NUL) to `out`.
/// Every credential shape is printable ASCII, and a wrong alignment or a binary payload decodes
/// to noise in which such stretches are rare, so this drops nearly all of the noise before it
/// is scanned or decoded again.
fn keep_text(decoded: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    for (i, &b) in decoded.iter().enumerate() {
        if !TEXT[usize::from(b)] {
            if i - start >= MIN_TEXT {
                out.extend_from_slice(&decoded[start..i]);
                out.push(0);
            }
            start = i + 1;
        }
    }
    if decoded.len() - start >= MIN_TEXT {
        out.extend_from_slice(&decoded[start..]);
        out.push(0);
    }
}

/// Decode every long base64/hex run at every alignment; keep the text, NUL-separated.
fn encoded_runs(data: &[u8], budget: &mut Budget) -> Vec<u8> {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if b64_val(data[i]).is_none() {
            i += 1;
            continue;
        }
        let start = i;
        while i < data.len() && b64_val(data[i]).is_some() {
            i += 1;
        }
        let run = &data[start..i];
        if run.len() < MIN_BASE64_RUN {
            continue;
        }
        // Four alignments of ~3/4 the run each.
        if !budget.take(run.len() * 3 + 8) {
            break;
        }
        for align in 0..4 {
            scratch.clear();
            base64_into(&run[align..], &mut scratch);
            keep_text(&scratch, &mut out);
            if let Some(inflated) = inflate_embedded(&scratch, budget) {
                keep_text(&inflated, &mut out);
            }
        }
        // Hex sub-runs inside the base64 run (hex digits are a subset of its alphabet).
        let mut j = 0;
        while j < run.len() {
            if !is_hex(run[j]) {
                j += 1;
                continue;
            }
            let hs = j;
            while j < run.len() && is_hex(run[j]) {
                j += 1;
            }
            let hexrun = &run[hs..j];
            if hexrun.len() >= MIN_HEX_RUN && budget.take(hexrun.len() + 4) {
                for align in 0..2 {
                    scratch.clear();
                    hex_into(&hexrun[align..], &mut scratch);
                    keep_text(&scratch, &mut out);
                }
            }
        }
    }
    out
}

/// Most bytes one compressed stream may inflate to within a scan window.
const MAX_INFLATE: usize = 1 << 20;
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b, 0x08];

fn find_gzip(data: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = data.get(from..)?.iter().position(|&b| b == GZIP_MAGIC[0]) {
        let at = from + i;
        if data.get(at..at + GZIP_MAGIC.len()) == Some(GZIP_MAGIC) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// A gzip stream anywhere in `data`, or a zlib stream at its start, inflated (bounded by the
/// budget; a truncated stream yields what decoded before the cut).
fn inflate_embedded(data: &[u8], budget: &mut Budget) -> Option<Vec<u8>> {
    use std::io::Read;
    let zlib = matches!(data, [0x78, 0x01 | 0x5e | 0x9c | 0xda, ..]);
    let gzip_at = find_gzip(data);
    if !zlib && gzip_at.is_none() {
        return None;
    }
    let cap = budget.left.min(MAX_INFLATE) as u64;
    let mut out = Vec::new();
    if let Some(at) = gzip_at {
        let _ = flate2::read::MultiGzDecoder::new(&data[at..])
            .take(cap)
            .read_to_end(&mut out);
    } else {
        let _ = flate2::read::ZlibDecoder::new(data)
            .take(cap)
            .read_to_end(&mut out);
    }
    (!out.is_empty() && budget.take(out.len())).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decodes_escapes_and_keeps_plus() {
        assert_eq!(unescape(b"a%3Db+c%2f%zz%4"), b"a=b+c/%zz%4");
    }

    #[test]
    fn json_unescapes_units_pairs_and_simple_escapes() {
        let got = unescape(br#"\u0041\/\"x\n\ud83d\ude00\q\u12"#);
        assert_eq!(got, "A/\"x\n\u{1F600}\\q\\u12".as_bytes());
    }

    #[test]
    fn base64_accepts_both_alphabets_and_stops_at_padding() {
        assert_eq!(base64_lenient(b"aGk_Pz8-"), b"hi???>");
        assert_eq!(base64_lenient(b"aGk/Pz8+"), b"hi???>");
        assert_eq!(base64_lenient(b"aGk=rest"), b"hi");
    }

    #[test]
    fn runs_decode_at_every_alignment() {
        // "xy/" prefix misaligns the encoded part; one of the alignments recovers it.
        let mut data = b"path xyz/".to_vec();
        data.extend_from_slice(b"dGhlIHBsYWluIHRleHQgaXMgaGVyZSBub3c");
        let mut budget = Budget::new(1 << 20);
        let out = encoded_runs(&data, &mut budget);
        let needle = b"the plain text is here";
        assert!(out.windows(needle.len()).any(|w| w == needle));
    }

    #[test]
    fn budget_caps_decoding() {
        let data = vec![b'A'; 10_000];
        let mut budget = Budget::new(1000);
        assert!(encoded_runs(&data, &mut budget).is_empty());
        assert!(budget.exhausted());
    }
}
