//! Scanner tests. Fixtures are assembled at run time from pieces and pseudo-random filler so
//! this file never holds a credential-shaped literal.

use super::fixtures::*;
use super::*;
use base64::Engine as _;
use std::io::Write as _;

/// Negative fixture per rule id: the near miss that must stay quiet (no finding at all).
fn negative(id: &str) -> String {
    match id {
        "gcp-service-account-key" => {
            r#"{"type": "service_account", "private_key_id": "", "private_key": "<set me>"}"#.into()
        }
        "private-key" => cat(&[
            "if line.starts_with(\"",
            &begin(""),
            "\") { return Kind::Pkcs8; }\n",
            "-----BEGIN PUBLIC KEY-----\n",
            &pem_body(41),
        ]),
        "aws-access-key-id" => cat(&[
            "AK",
            "IA",
            &rnd(UPPER, 15, 42),
            " and ak",
            "ia",
            &rnd(LOWER, 16, 43),
        ]),
        "aws-secret-access-key" => cat(&[
            "aws_secret_access_key = ${AWS_SECRET_ACCESS_KEY}\nchecksum: ",
            &rnd(&b64std(), 40, 44),
            "\naws_secret_access_key=",
            &"ab".repeat(20),
        ]),
        "google-api-key" => cat(&["key=", "AI", "za", &rnd(&b64url(), 20, 45)]),
        "azure-storage-key" => {
            "DefaultEndpointsProtocol=https;AccountName=prodlogs7;AccountKey=<your key>;".into()
        }
        "github-pat" => cat(&["gh", "p_", &rnd(&b62(), 35, 46), " ghp_token_here"]),
        "github-oauth-token" => cat(&["gh", "o_", &rnd(&b62(), 20, 47)]),
        "github-app-token" => cat(&["gh", "x_", &rnd(&b62(), 36, 48)]),
        "github-refresh-token" => cat(&["gh", "r_", &rnd(&b62(), 30, 49)]),
        "github-fine-grained-pat" => cat(&["github", "_pat_", &rnd(&b62(), 22, 50), "_short"]),
        "gitlab-pat" => cat(&["gl", "pat-", "xxxx"]),
        "slack-webhook" => "https://hooks.slack.com/services/T000/B000/XXXX".into(),
        "slack-token" => "SLACK_BOT_TOKEN=xoxb-your-token".into(),
        "stripe-secret-key" => cat(&["sk", "_test_", &rnd(&b62(), 99, 51)]),
        "stripe-restricted-key" => cat(&["rk", "_test_", &rnd(&b62(), 99, 52)]),
        "npm-token" => "npm_config_cache=/tmp/npm_cache_directory_for_the_build".into(),
        "pypi-token" => cat(&["pypi-", "AgEIcHlwaS5vcmc", "short"]),
        "anthropic-api-key" => cat(&["sk-", "ant-api03-", &rnd(&b64url(), 20, 53)]),
        "anthropic-oauth-token" => cat(&["sk-", "ant-oat01-", &rnd(&b64url(), 30, 54)]),
        "openai-api-key" => cat(&["sk-", "proj-", "abc123 sk-", &rnd(&b62(), 48, 55)]),
        "huggingface-token" => cat(&[
            "hf",
            "_",
            &rnd(LOWER, 34, 56),
            " hf_hub_download_and_cache_repository",
        ]),
        "twilio-api-key" => cat(&["md5=", &rnd(HEXL, 32, 57), " SKU SK", &rnd(HEXL, 31, 58)]),
        "sendgrid-api-key" => "SG.abc.def SG.tooshort.value".into(),
        "mailgun-api-key" => cat(&["key-value store key-", &rnd(HEXL, 20, 59)]),
        "digitalocean-token" => cat(&["do", "p_v1_", &rnd(HEXL, 10, 60)]),
        "shopify-token" => cat(&["shp", "at_", &rnd(LOWER, 32, 61)]),
        "discord-bot-token" => cat(&[
            "M",
            &rnd(LOWER, 23, 62),
            ".",
            &rnd(&b64url(), 6, 63),
            ".",
            &rnd(&b64url(), 38, 64),
        ]),
        "telegram-bot-token" => cat(&[&rnd(DIGITS, 10, 65), ":BB", &rnd(&b64url(), 33, 66)]),
        "jwt" => cat(&[
            &jwt_part(r#"{"typ":"JWT","kid":"k1"}"#),
            ".",
            &jwt_part(r#"{"sub":"4471"}"#),
            ".",
            &rnd(&b64url(), 43, 67),
        ]),
        "generic-secret-assignment" => [
            "password = \"changeme\"",
            "api_key: ${API_KEY_FROM_ENVIRONMENT}",
            "password=passwordpasswordpassword",
            "secret: /etc/secrets/service/token.txt",
            "AUTH_TOKEN={{ vault_auth_token_value }}",
        ]
        .join("\n"),
        _ => String::new(),
    }
}

fn scan(data: &[u8]) -> Option<&'static str> {
    Scanner::new().scan(data).map(|f| f.rule)
}

macro_rules! rule_cases {
    ($($name:ident => $id:literal,)*) => {
        mod per_rule {
            use super::*;
            $(
                mod $name {
                    use super::*;
                    #[test]
                    fn positive_is_found() {
                        let fx = positive($id);
                        assert!(!fx.is_empty(), "no fixture for {}", $id);
                        assert_eq!(scan(fx.as_bytes()), Some($id), "fixture for {}", $id);
                    }
                    #[test]
                    fn negative_is_quiet() {
                        let fx = negative($id);
                        assert!(!fx.is_empty(), "no fixture for {}", $id);
                        assert_eq!(scan(fx.as_bytes()), None, "near miss for {}", $id);
                    }
                }
            )*
            pub(super) const COVERED: &[&str] = &[$($id),*];
        }
    };
}

rule_cases! {
    gcp_service_account_key => "gcp-service-account-key",
    private_key => "private-key",
    aws_access_key_id => "aws-access-key-id",
    aws_secret_access_key => "aws-secret-access-key",
    google_api_key => "google-api-key",
    azure_storage_key => "azure-storage-key",
    github_pat => "github-pat",
    github_oauth_token => "github-oauth-token",
    github_app_token => "github-app-token",
    github_refresh_token => "github-refresh-token",
    github_fine_grained_pat => "github-fine-grained-pat",
    gitlab_pat => "gitlab-pat",
    slack_webhook => "slack-webhook",
    slack_token => "slack-token",
    stripe_secret_key => "stripe-secret-key",
    stripe_restricted_key => "stripe-restricted-key",
    npm_token => "npm-token",
    pypi_token => "pypi-token",
    anthropic_api_key => "anthropic-api-key",
    anthropic_oauth_token => "anthropic-oauth-token",
    openai_api_key => "openai-api-key",
    huggingface_token => "huggingface-token",
    twilio_api_key => "twilio-api-key",
    sendgrid_api_key => "sendgrid-api-key",
    mailgun_api_key => "mailgun-api-key",
    digitalocean_token => "digitalocean-token",
    shopify_token => "shopify-token",
    discord_bot_token => "discord-bot-token",
    telegram_bot_token => "telegram-bot-token",
    jwt => "jwt",
    generic_secret_assignment => "generic-secret-assignment",
}

#[test]
fn every_rule_has_cases_and_a_stable_unique_id() {
    let ids: Vec<&str> = rules().iter().map(|r| r.id).collect();
    assert!(ids.len() >= 24);
    assert_eq!(ids, per_rule::COVERED, "rule table and test cases differ");
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "duplicate rule id");
    for r in rules() {
        assert!(
            r.id.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{} is not kebab-case",
            r.id
        );
        assert!(!r.description.is_empty());
    }
}

#[test]
fn rules_compile() {
    assert!(rules::compile().is_ok());
}

#[test]
fn other_private_key_headers_are_found() {
    for kind in ["", "EC ", "DSA ", "OPENSSH ", "ENCRYPTED "] {
        let fx = cat(&[&begin(kind), "\n", &pem_body(70)]);
        assert_eq!(scan(fx.as_bytes()), Some("private-key"), "{kind}");
    }
    let pgp = cat(&[
        "-----BEGIN PGP ",
        "PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\n\n",
        &pem_body(71),
    ]);
    assert_eq!(scan(pgp.as_bytes()), Some("private-key"));
}

#[test]
fn other_prefix_variants_are_found() {
    let asia = cat(&["AS", "IA", &rnd(UPPER, 16, 72)]);
    assert_eq!(scan(asia.as_bytes()), Some("aws-access-key-id"));
    let ghu = cat(&["gh", "u_", &rnd(&b62(), 36, 73)]);
    assert_eq!(scan(ghu.as_bytes()), Some("github-app-token"));
    let legacy = cat(&[
        "sk-",
        &rnd(&b62(), 20, 74),
        "T3Blbk",
        "FJ",
        &rnd(&b62(), 20, 75),
    ]);
    assert_eq!(scan(legacy.as_bytes()), Some("openai-api-key"));
    let xoxp = cat(&[
        "xo",
        "xp-",
        &rnd(DIGITS, 12, 76),
        "-",
        &rnd(DIGITS, 12, 77),
        "-",
        &rnd(&b62(), 32, 78),
    ]);
    assert_eq!(scan(xoxp.as_bytes()), Some("slack-token"));
    let google = cat(&["AI", "za", &rnd(&b64url(), 35, 79)]);
    assert_eq!(scan(google.as_bytes()), Some("google-api-key"));
    let json_aws = cat(&[r#"{"SecretAccessKey": ""#, &rnd(&b64std(), 40, 80), r#""}"#]);
    assert_eq!(scan(json_aws.as_bytes()), Some("aws-secret-access-key"));
    let hex_secret = cat(&["client_secret=", &rnd(HEXL, 40, 81)]);
    assert_eq!(
        scan(hex_secret.as_bytes()),
        Some("generic-secret-assignment")
    );
}

#[test]
fn finding_never_carries_the_value() {
    let scanner = Scanner::new();
    for info in rules() {
        let fx = positive(info.id);
        let f = scanner.scan_str(&fx).expect("positive fixture");
        let shown = format!("{f:?} {} {}", f.rule, f.description);
        // The distinctive tail of every fixture is at least 16 random characters.
        let tail = &fx[fx.len().saturating_sub(16)..];
        assert!(!shown.contains(tail), "{} leaks its value", info.id);
    }
}

#[test]
fn clean_text_is_quiet() {
    let text = concat!(
        "The quick brown fox jumps over the lazy dog. fn main() { println!(\"hello\"); }\n",
        "GET /api/v1/users?page=2&per_page=50 HTTP/1.1\r\nHost: api.example.net\r\n",
        "{\"model\":\"claude\",\"messages\":[{\"role\":\"user\",\"content\":\"fix the build\\n\"}]}\n",
        "commit 2bffcf5e1d0c4b7a9f3e8d6c5b4a392817161514\n",
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n",
        "password: ${DB_PASSWORD}\n",
        "uuid 123e4567-e89b-12d3-a456-426614174000 and SGVsbG8gV29ybGQgdGhpcyBpcyBmaW5l\n",
    );
    assert_eq!(scan(text.as_bytes()), None);
}

// ---------------------------------------------------------------- encoded variants

fn encoded_fixtures() -> Vec<(&'static str, String)> {
    [
        "github-pat",
        "aws-access-key-id",
        "anthropic-api-key",
        "slack-webhook",
        "jwt",
    ]
    .into_iter()
    .map(|id| (id, positive(id)))
    .collect()
}

fn percent_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[test]
fn url_encoded_secrets_are_found() {
    for (id, fx) in encoded_fixtures() {
        let url = cat(&[
            "https://collector.example.net/c?d=",
            &percent_all(&fx),
            "&x=1",
        ]);
        assert_eq!(scan(url.as_bytes()), Some(id), "url-encoded {id}");
        let form = cat(&["field=", &percent_all(&fx).to_lowercase()]);
        assert_eq!(scan(form.as_bytes()), Some(id), "form-encoded {id}");
    }
}

#[test]
fn base64_secrets_are_found_at_every_alignment() {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    for (id, fx) in encoded_fixtures() {
        for pad in 0..3 {
            let plain = cat(&[&"x".repeat(pad), " ", &fx, " "]);
            for enc in [STANDARD.encode(&plain), URL_SAFE_NO_PAD.encode(&plain)] {
                let body = cat(&["{\"blob\":\"", &enc, "\"}"]);
                assert_eq!(scan(body.as_bytes()), Some(id), "base64 {id} pad {pad}");
                // Encoded value glued to a path segment: the run no longer starts aligned.
                let path = cat(&["/upload/abc/", &enc]);
                assert_eq!(
                    scan(path.as_bytes()),
                    Some(id),
                    "base64 path {id} pad {pad}"
                );
            }
        }
    }
}

#[test]
fn hex_secrets_are_found() {
    for (id, fx) in encoded_fixtures() {
        let lower = hex::encode(&fx);
        assert_eq!(
            scan(cat(&["data=", &lower]).as_bytes()),
            Some(id),
            "hex {id}"
        );
        let upper = cat(&["data=7", &lower.to_uppercase()]);
        assert_eq!(scan(upper.as_bytes()), Some(id), "odd-aligned HEX {id}");
    }
}

#[test]
fn json_escaped_secrets_are_found() {
    for (id, fx) in encoded_fixtures() {
        let escaped: String = fx.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
        let body = cat(&["{\"content\":\"", &escaped, "\"}"]);
        assert_eq!(scan(body.as_bytes()), Some(id), "\\u-escaped {id}");
        let slashed = fx.replace('/', "\\/");
        let body = cat(&["{\"content\":\"", &slashed, "\"}"]);
        assert_eq!(scan(body.as_bytes()), Some(id), "\\/-escaped {id}");
    }
}

#[test]
fn two_stacked_encodings_are_found() {
    use base64::engine::general_purpose::STANDARD;
    for (id, fx) in encoded_fixtures() {
        let b64_of_url = STANDARD.encode(percent_all(&fx));
        assert_eq!(scan(b64_of_url.as_bytes()), Some(id), "base64(url) {id}");
        let url_of_b64 = percent_all(&STANDARD.encode(&fx));
        assert_eq!(scan(url_of_b64.as_bytes()), Some(id), "url(base64) {id}");
    }
}

#[test]
fn basic_auth_header_and_multipart_body_are_found() {
    use base64::engine::general_purpose::STANDARD;
    let cred = cat(&[
        "x-access-token:",
        &positive("github-pat")["GITHUB_TOKEN=".len()..],
    ]);
    let header = cat(&["Authorization: Basic ", &STANDARD.encode(cred)]);
    assert_eq!(scan(header.as_bytes()), Some("github-pat"));
    let multipart = cat(&[
        "--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"k.pem\"\r\n",
        "Content-Type: application/octet-stream\r\n\r\n",
        &positive("private-key"),
        "\r\n--b0undary--\r\n",
    ]);
    assert_eq!(scan(multipart.as_bytes()), Some("private-key"));
}

#[test]
fn three_stacked_encodings_stop_at_the_depth_bound() {
    use base64::engine::general_purpose::STANDARD;
    let fx = positive("github-pat");
    let deep = STANDARD.encode(STANDARD.encode(STANDARD.encode(&fx)));
    assert_eq!(
        scan(deep.as_bytes()),
        None,
        "depth is bounded at two layers"
    );
}

#[test]
fn decode_budget_is_per_window_so_large_inputs_still_decode() {
    use base64::engine::general_purpose::STANDARD;
    // 6 MiB of harmless base64 before an encoded secret: more than one window's budget.
    let filler = STANDARD.encode(rnd(&b62(), 4_500_000, 82));
    let fx = STANDARD.encode(cat(&[" ", &positive("npm-token"), " "]));
    let body = cat(&[&filler, " ", &fx]);
    assert!(body.len() > 2 * SCAN_WINDOW);
    assert_eq!(scan(body.as_bytes()), Some("npm-token"));
}

// ---------------------------------------------------------------- streaming

fn stream_all(chunks: &[&[u8]]) -> Option<&'static str> {
    let scanner = Scanner::new();
    let mut s = scanner.stream();
    let mut last = None;
    for c in chunks {
        last = s.feed(c).map(|f| f.rule).or(last);
    }
    last
}

#[test]
fn secrets_split_at_every_offset_are_found() {
    use base64::engine::general_purpose::STANDARD;
    let head = cat(&[
        "POST /v1/messages HTTP/1.1\r\n\r\n",
        &rnd(LOWER, 300, 83),
        " ",
    ]);
    let tail = cat(&[" ", &rnd(LOWER, 300, 84)]);
    for id in ["github-pat", "private-key", "jwt"] {
        for variant in [positive(id), STANDARD.encode(positive(id))] {
            let body = cat(&[&head, &variant, &tail]).into_bytes();
            let from = head.len().saturating_sub(2);
            let to = head.len() + variant.len() + 2;
            for cut in from..=to {
                let (a, b) = body.split_at(cut);
                assert_eq!(stream_all(&[a, b]), Some(id), "{id} cut at {cut}");
            }
        }
    }
}

#[test]
fn secrets_fed_byte_by_byte_are_found() {
    let fx = cat(&["noise ", &positive("stripe-secret-key"), " more"]).into_bytes();
    let chunks: Vec<&[u8]> = fx.chunks(1).collect();
    assert_eq!(stream_all(&chunks), Some("stripe-secret-key"));
}

#[test]
fn stream_memory_stays_bounded_and_finding_sticks() {
    let scanner = Scanner::new();
    let mut s = scanner.stream();
    let clean = rnd(LOWER, 256 << 10, 85);
    for _ in 0..8 {
        assert_eq!(s.feed(clean.as_bytes()), None);
        assert!(s.retained_len() <= STREAM_OVERLAP + 64);
    }
    let hit = s.feed(positive("gitlab-pat").as_bytes()).map(|f| f.rule);
    assert_eq!(hit, Some("gitlab-pat"));
    assert_eq!(s.feed(b"clean").map(|f| f.rule), Some("gitlab-pat"));
    assert_eq!(s.finding().map(|f| f.rule), Some("gitlab-pat"));
}

#[test]
fn large_one_shot_scan_finds_secret_on_window_boundary() {
    let fx = positive("npm-token");
    let mut body = rnd(LOWER, SCAN_WINDOW - 10, 86);
    body.push(' ');
    body.push_str(&fx);
    body.push(' ');
    body.push_str(&rnd(LOWER, SCAN_WINDOW, 87));
    assert_eq!(scan(body.as_bytes()), Some("npm-token"));
}

// ---------------------------------------------------------------- gzip

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("in-memory write");
    enc.finish().expect("in-memory finish")
}

#[test]
fn gzip_body_with_secret_is_found() {
    let body = cat(&["{\"env\":\"", &positive("digitalocean-token"), "\"}"]);
    let got = Scanner::new().scan_gzip(&gzip(body.as_bytes()));
    assert_eq!(
        got.ok().flatten().map(|f| f.rule),
        Some("digitalocean-token")
    );
}

#[test]
fn gzip_clean_body_is_quiet() {
    let got = Scanner::new().scan_gzip(&gzip(rnd(LOWER, 100_000, 88).as_bytes()));
    assert!(matches!(got, Ok(None)));
}

#[test]
fn gzip_bomb_stops_at_the_limit() {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..16 {
        enc.write_all(&zeros).expect("in-memory write");
    }
    let bomb = enc.finish().expect("in-memory finish");
    assert!(bomb.len() < 100_000);
    let err = Scanner::new().scan_gzip_with_limit(&bomb, 1 << 20);
    match err {
        Err(ScanError::TooLarge { limit }) => assert_eq!(limit, 1 << 20),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // The same body under a limit it fits in scans clean.
    assert!(matches!(
        Scanner::new().scan_gzip_with_limit(&bomb, 32 << 20),
        Ok(None)
    ));
}

#[test]
fn gzip_secret_before_the_limit_wins_over_the_limit() {
    let mut data = positive("npm-token").into_bytes();
    data.push(b' ');
    data.extend(std::iter::repeat_n(b'a', 3 << 20));
    let got = Scanner::new().scan_gzip_with_limit(&gzip(&data), 1 << 20);
    assert_eq!(got.ok().flatten().map(|f| f.rule), Some("npm-token"));
}

#[test]
fn corrupt_gzip_is_an_error() {
    let mut data = gzip(b"hello world, hello world");
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    data.truncate(mid + 2);
    assert!(matches!(
        Scanner::new().scan_gzip(&data),
        Err(ScanError::Gzip(_))
    ));
    let msg = ScanError::Gzip("x".into()).to_string();
    assert!(!msg.contains('\n'));
}

// ---------------------------------------------------------------- properties

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn scan_never_panics(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let s = Scanner::new();
            let _ = s.scan(&data);
            let _ = s.scan_gzip(&data);
        }

        #[test]
        fn stream_chunking_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..4096),
            cuts in proptest::collection::vec(1usize..512, 0..16),
        ) {
            let scanner = Scanner::new();
            let mut s = scanner.stream();
            let mut rest: &[u8] = &data;
            for c in cuts {
                let (a, b) = rest.split_at(c.min(rest.len()));
                let _ = s.feed(a);
                rest = b;
            }
            let _ = s.feed(rest);
            prop_assert!(s.retained_len() <= STREAM_OVERLAP + 64);
        }

        #[test]
        fn embedded_secret_is_found_among_random_bytes(
            pre in proptest::collection::vec(any::<u8>(), 0..512),
            post in proptest::collection::vec(any::<u8>(), 0..512),
            which in 0usize..5,
        ) {
            let id = ["github-pat", "npm-token", "sendgrid-api-key", "private-key", "jwt"][which];
            let mut data = pre;
            data.push(b'\n');
            data.extend_from_slice(positive(id).as_bytes());
            data.push(b'\n');
            data.extend_from_slice(&post);
            prop_assert!(Scanner::new().scan(&data).is_some());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        // Escape-heavy input drives every decoding layer; fewer, shorter cases keep the
        // unoptimised test build quick.
        #[test]
        fn scan_never_panics_on_escape_heavy_input(
            data in proptest::collection::vec(
                prop_oneof![Just(b'%'), Just(b'\\'), Just(b'u'), Just(b'd'), Just(b'8'),
                            Just(b'A'), Just(b'='), Just(b'/'), any::<u8>()], 0..1024)
        ) {
            let _ = Scanner::new().scan(&data);
        }
    }
}

// ---------------------------------------------------------------- evasions

#[test]
fn every_rule_survives_every_evasion() {
    let mut missed = Vec::new();
    for info in rules() {
        let line = positive(info.id);
        for (how, data) in evasions(&line) {
            if Scanner::new().scan(&data).is_none() {
                missed.push(format!("{} ({how})", info.id));
            }
        }
    }
    assert!(missed.is_empty(), "not found: {missed:?}");
}
