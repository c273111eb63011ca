//! Credential fixtures, one per rule, assembled at run time from pieces and pseudo-random
//! filler (no credential-shaped literal in the source). Shared by the scanner's unit tests,
//! the git-gate tests and the scanner benchmark (included there with `#[path]`).
#![allow(dead_code)]

use base64::Engine as _;

pub(crate) const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
pub(crate) const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
pub(crate) const DIGITS: &[u8] = b"0123456789";
pub(crate) const HEXL: &[u8] = b"0123456789abcdef";

pub(crate) fn alpha(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

pub(crate) fn b62() -> Vec<u8> {
    alpha(&[UPPER, LOWER, DIGITS])
}

pub(crate) fn b64url() -> Vec<u8> {
    alpha(&[UPPER, LOWER, DIGITS, b"-_"])
}

pub(crate) fn b64std() -> Vec<u8> {
    alpha(&[UPPER, LOWER, DIGITS, b"+/"])
}

/// Deterministic filler: `n` characters of `alphabet` from `seed` (xorshift64*).
pub(crate) fn rnd(alphabet: &[u8], n: usize, seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33;
            char::from(alphabet[(r as usize) % alphabet.len()])
        })
        .collect()
}

pub(crate) fn cat(parts: &[&str]) -> String {
    parts.concat()
}

pub(crate) fn pem_body(seed: u64) -> String {
    let mut body = String::new();
    for i in 0..4 {
        body.push_str(&rnd(&b64std(), 64, seed + i));
        body.push('\n');
    }
    body
}

pub(crate) fn begin(kind: &str) -> String {
    cat(&["-----", "BEGIN ", kind, "PRIVATE", " KEY-----"])
}

pub(crate) fn jwt_part(json: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// Positive fixture per rule id: a realistic line holding a freshly made credential.
pub(crate) fn positive(id: &str) -> String {
    match id {
        "gcp-service-account-key" => cat(&[
            r#"{"type": "service_account", "project_id": "build-pipeline-4471", "private_key_id": ""#,
            &rnd(HEXL, 40, 1),
            r#"", "private_key": ""#,
            &begin(""),
            r"\n",
            &pem_body(2).replace('\n', r"\n"),
            r#"-----END PRIVATE KEY-----\n", "client_email": "ci@build-pipeline-4471.iam.gserviceaccount.com"}"#,
        ]),
        "private-key" => cat(&[
            &begin("RSA "),
            "\n",
            &pem_body(3),
            "-----END RSA PRIVATE KEY-----\n",
        ]),
        "aws-access-key-id" => cat(&[
            "aws_access_key_id = ",
            "AK",
            "IA",
            &rnd(&alpha(&[UPPER, b"234567"]), 16, 4),
        ]),
        "aws-secret-access-key" => cat(&[
            "export AWS_SECRET_ACCESS_KEY=",
            &rnd(&b64std(), 40, 5),
            "\n",
        ]),
        "google-api-key" => cat(&[
            "https://maps.googleapis.com/maps/api/geocode/json?key=",
            "AI",
            "za",
            &rnd(&b64url(), 35, 6),
            "&address=x",
        ]),
        "azure-storage-key" => cat(&[
            "DefaultEndpointsProtocol=https;AccountName=prodlogs7;Account",
            "Key=",
            &rnd(&b64std(), 86, 7),
            "==;EndpointSuffix=core.windows.net",
        ]),
        "github-pat" => cat(&["GITHUB_TOKEN=", "gh", "p_", &rnd(&b62(), 36, 8)]),
        "github-oauth-token" => cat(&["token ", "gh", "o_", &rnd(&b62(), 36, 9)]),
        "github-app-token" => cat(&["Authorization: Bearer ", "gh", "s_", &rnd(&b62(), 36, 10)]),
        "github-refresh-token" => cat(&["refresh_token=", "gh", "r_", &rnd(&b62(), 76, 11)]),
        "github-fine-grained-pat" => cat(&[
            "github",
            "_pat_",
            &rnd(&b62(), 22, 12),
            "_",
            &rnd(&b62(), 59, 13),
        ]),
        "gitlab-pat" => cat(&["PRIVATE-TOKEN: ", "gl", "pat-", &rnd(&b64url(), 20, 14)]),
        "slack-webhook" => cat(&[
            "https://hooks.",
            "slack.com/services/T",
            &rnd(&alpha(&[UPPER, DIGITS]), 9, 15),
            "/B",
            &rnd(&alpha(&[UPPER, DIGITS]), 11, 16),
            "/",
            &rnd(&b62(), 24, 17),
        ]),
        "slack-token" => cat(&[
            "xo",
            "xb-",
            &rnd(DIGITS, 12, 18),
            "-",
            &rnd(DIGITS, 13, 19),
            "-",
            &rnd(&b62(), 24, 20),
        ]),
        "stripe-secret-key" => cat(&["sk", "_live_", &rnd(&b62(), 99, 21)]),
        "stripe-restricted-key" => cat(&["rk", "_live_", &rnd(&b62(), 99, 22)]),
        "npm-token" => cat(&[
            "//registry.npmjs.org/:_authToken=",
            "np",
            "m_",
            &rnd(&b62(), 36, 23),
        ]),
        "pypi-token" => cat(&[
            "password = ",
            "pypi-",
            "AgEIcHlwaS5vcmc",
            &rnd(&b64url(), 160, 24),
        ]),
        "anthropic-api-key" => cat(&[
            "x-api-key: ",
            "sk-",
            "ant-api03-",
            &rnd(&b64url(), 93, 25),
            "AA",
        ]),
        "anthropic-oauth-token" => cat(&["sk-", "ant-oat01-", &rnd(&b64url(), 93, 26), "AA"]),
        "openai-api-key" => cat(&["OPENAI_API_KEY=", "sk-", "proj-", &rnd(&b64url(), 156, 27)]),
        "huggingface-token" => cat(&[
            "HF_TOKEN=",
            "hf",
            "_",
            &rnd(&alpha(&[UPPER, LOWER]), 34, 28),
        ]),
        "twilio-api-key" => cat(&["TWILIO_API_KEY=", "S", "K", &rnd(HEXL, 32, 29)]),
        "sendgrid-api-key" => cat(&[
            "SG",
            ".",
            &rnd(&b64url(), 22, 30),
            ".",
            &rnd(&b64url(), 43, 31),
        ]),
        "mailgun-api-key" => cat(&["api:", "ke", "y-", &rnd(HEXL, 32, 32)]),
        "digitalocean-token" => cat(&["DIGITALOCEAN_TOKEN=", "do", "p_v1_", &rnd(HEXL, 64, 33)]),
        "shopify-token" => cat(&["X-Shopify-Access-Token: ", "shp", "at_", &rnd(HEXL, 32, 34)]),
        "discord-bot-token" => cat(&[
            "Authorization: Bot ",
            &base64::engine::general_purpose::STANDARD_NO_PAD
                .encode(cat(&["81234567", "8901234567"])),
            ".",
            &rnd(&b64url(), 6, 35),
            ".",
            &rnd(&b64url(), 38, 36),
        ]),
        "telegram-bot-token" => cat(&[
            "https://api.telegram.org/bot",
            &rnd(DIGITS, 10, 37),
            ":A",
            "A",
            &rnd(&b64url(), 33, 38),
            "/getMe",
        ]),
        "jwt" => cat(&[
            "Authorization: Bearer ",
            &jwt_part(r#"{"alg":"HS256","typ":"JWT"}"#),
            ".",
            &jwt_part(r#"{"sub":"4471","name":"ci","iat":1760000000}"#),
            ".",
            &rnd(&b64url(), 43, 39),
        ]),
        "generic-secret-assignment" => {
            cat(&["DB_PASS", "WORD=\"", "Qx7", &rnd(&b62(), 21, 40), "\""])
        }
        _ => String::new(),
    }
}

/// The ways a sender may disguise a credential line that the scanner must see through, each
/// with a label: glued into longer words on both sides, split by a line continuation inside
/// the value (as in a diff's added lines), base64, hex, fully percent-encoded, gzip, and
/// gzip then base64.
pub(crate) fn evasions(line: &str) -> Vec<(&'static str, Vec<u8>)> {
    use std::io::Write as _;
    // Split in the middle of the longest token (the random part of every fixture).
    let is_tok = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let bytes = line.as_bytes();
    let (mut best, mut best_len, mut i) = (0, 0, 0);
    while i < bytes.len() {
        let s = i;
        while i < bytes.len() && is_tok(bytes[i]) {
            i += 1;
        }
        if i - s > best_len {
            (best, best_len) = (s, i - s);
        }
        i += 1;
    }
    let cut = best + best_len / 2;
    // Glued: word characters right before the value and around the whole line.
    let mut glued_line = line.as_bytes().to_vec();
    // Only a separator is replaced; a `.` or `/` there is part of the credential's shape.
    if best > 0 && matches!(glued_line[best - 1], b' ' | b'=' | b'"' | b'\'') {
        glued_line[best - 1] = b'Z';
    }
    let glued = format!("Zq7{}Qx9", String::from_utf8_lossy(&glued_line));
    let continued = format!("+{}\\\n+{}\n", &line[..cut], &line[cut..]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(line);
    let pct: String = line.bytes().map(|b| format!("%{b:02X}")).collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = gz.write_all(line.as_bytes());
    let gz = gz.finish().unwrap_or_default();
    vec![
        ("plain", line.as_bytes().to_vec()),
        ("glued", glued.into_bytes()),
        ("continued", continued.into_bytes()),
        ("base64", format!("{{\"blob\":\"{b64}\"}}").into_bytes()),
        ("hex", format!("data={}", hex::encode(line)).into_bytes()),
        ("percent", format!("/upload?q={pct}").into_bytes()),
        ("gzip", gz.clone()),
        (
            "gzip-base64",
            format!(
                "payload: {}",
                base64::engine::general_purpose::STANDARD.encode(&gz)
            )
            .into_bytes(),
        ),
    ]
}
