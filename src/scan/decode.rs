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

/// All one-level decodings of `data` worth scanning, within `budget`.
///
/// Percent-decoding and JSON unescaping yield a full copy each (only when the input holds an
/// escape). Base64 and hex runs are decoded at every alignment, because a run often starts
/// with bytes that are not part of the encoded value (`/upload/QUtJ...`), and the results are
/// joined by NUL bytes into one buffer so one scan covers them all.
pub(crate) fn decodings(data: &[u8], budget: &mut Budget) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if has_percent_escape(data) && budget.take(data.len()) {
        out.push(percent_decode(data));
    }
    if has_json_escape(data) && budget.take(data.len()) {
        out.push(json_unescape(data));
    }
    let runs = encoded_runs(data, budget);
    if !runs.is_empty() {
        out.push(runs);
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

fn has_percent_escape(data: &[u8]) -> bool {
    data.windows(3)
        .any(|w| w[0] == b'%' && is_hex(w[1]) && is_hex(w[2]))
}

/// `%XX` → byte. `+` is left alone: form encoding sends a literal `+` as `%2B`, and keeping
/// `+` keeps base64 values intact.
pub(crate) fn percent_decode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if b == b'%' && i + 2 < data.len() && is_hex(data[i + 1]) && is_hex(data[i + 2]) {
            out.push(hex_val(data[i + 1]) << 4 | hex_val(data[i + 2]));
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}

fn has_json_escape(data: &[u8]) -> bool {
    data.windows(2)
        .any(|w| w[0] == b'\\' && matches!(w[1], b'u' | b'/' | b'"' | b'\\'))
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

/// JSON string escapes → bytes (`\u0041`, surrogate pairs, `\/`, `\n`, ...). Bytes outside
/// escapes pass through, so a whole JSON document can be unescaped in one pass.
pub(crate) fn json_unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] != b'\\' || i + 1 >= data.len() {
            out.push(data[i]);
            i += 1;
            continue;
        }
        let simple = match data[i + 1] {
            b'/' => Some(b'/'),
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            i += 2;
            continue;
        }
        let Some(unit) = (data[i + 1] == b'u').then(|| hex4(data, i + 2)).flatten() else {
            out.push(data[i]);
            i += 1;
            continue;
        };
        i += 6;
        let mut code = unit;
        let low = (data.get(i) == Some(&b'\\') && data.get(i + 1) == Some(&b'u'))
            .then(|| hex4(data, i + 2))
            .flatten();
        if let Some(low) = low {
            if (0xD800..0xDC00).contains(&unit) && (0xDC00..0xE000).contains(&low) {
                code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                i += 6;
            }
        }
        let ch = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    }
    out
}

/// 6-bit value of a base64 character, accepting both the standard and the URL-safe alphabet.
fn b64_val(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// Decode base64 (either alphabet, padding optional) until the first non-alphabet byte.
pub(crate) fn base64_lenient(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 4 * 3 + 2);
    base64_into(data, &mut out);
    out
}

fn base64_into(data: &[u8], out: &mut Vec<u8>) {
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in data {
        let Some(v) = b64_val(b) else { break };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
}

fn hex_into(data: &[u8], out: &mut Vec<u8>) {
    for pair in data.chunks_exact(2) {
        out.push(hex_val(pair[0]) << 4 | hex_val(pair[1]));
    }
}

/// Decode every long base64/hex run at every alignment; NUL-separated in one buffer.
fn encoded_runs(data: &[u8], budget: &mut Budget) -> Vec<u8> {
    let mut out = Vec::new();
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
            base64_into(&run[align..], &mut out);
            out.push(0);
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
                    hex_into(&hexrun[align..], &mut out);
                    out.push(0);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decodes_escapes_and_keeps_plus() {
        assert_eq!(percent_decode(b"a%3Db+c%2f%zz%4"), b"a=b+c/%zz%4");
    }

    #[test]
    fn json_unescapes_units_pairs_and_simple_escapes() {
        let got = json_unescape(br#"\u0041\/\"x\n\ud83d\ude00\q\u12"#);
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
