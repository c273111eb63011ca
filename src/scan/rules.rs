//! The built-in credential rules: one table, compiled once into a `RegexSet` prefilter.
//!
//! Order matters: when several rules fire on the same bytes, the earliest entry wins, so
//! specific shapes come before broad ones (the GCP key JSON before the bare PEM block, the
//! generic assignment last).

use std::sync::LazyLock;

use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

/// Public face of a rule: a stable id and a human description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleInfo {
    /// Stable id, kebab-case, e.g. `github-pat`.
    pub id: &'static str,
    /// What the rule finds, e.g. `GitHub personal access token`.
    pub(crate) description: &'static str,
}

/// A post-match check on the value (capture group 1 when present, else the whole match).
/// Used where the shape alone would fire on ordinary text.
type Check = fn(&[u8]) -> bool;

pub(crate) struct RuleDef {
    pub info: RuleInfo,
    pub(crate) pattern: &'static str,
    pub(crate) check: Option<Check>,
}

const fn rule(id: &'static str, description: &'static str, pattern: &'static str) -> RuleDef {
    RuleDef {
        info: RuleInfo { id, description },
        pattern,
        check: None,
    }
}

const fn checked(
    id: &'static str,
    description: &'static str,
    pattern: &'static str,
    check: Check,
) -> RuleDef {
    RuleDef {
        info: RuleInfo { id, description },
        pattern,
        check: Some(check),
    }
}

// No pattern depends on a word boundary or on what follows a value: the sender controls both,
// so a secret glued into a longer word or padded with more characters is still found.
// Patterns are compiled with Unicode off: `\b`, `\s` and classes are ASCII and `[^x]` matches
// any byte. Repetitions are bounded or end at the first byte outside their class, so a forward
// search never runs far past a match (keeps `find`/`captures` iteration linear).
pub(crate) static RULES: &[RuleDef] = &[
    rule(
        "gcp-service-account-key",
        "Google Cloud service-account key (JSON private_key)",
        r#""private_key"\s*:\s*"-----BEGIN (?:RSA )?PRIVATE KEY-----"#,
    ),
    rule(
        "private-key",
        "PEM/OpenSSH/PGP private key block",
        r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY(?: BLOCK)?-----[^-]{0,200}?[A-Za-z0-9+/]{40}",
    ),
    rule(
        "aws-access-key-id",
        "AWS access key id",
        r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}",
    ),
    checked(
        "aws-secret-access-key",
        "AWS secret access key",
        r#"(?i:aws_?secret_?access_?key|aws_?secret_?key|secret_?access_?key)\\?["']?\s*(?:=>|[:=])\s*\\?["']?([A-Za-z0-9/+]{40})"#,
        high_entropy,
    ),
    rule(
        "google-api-key",
        "Google API key",
        r"AIza[0-9A-Za-z_\-]{35}",
    ),
    rule(
        "azure-storage-key",
        "Azure storage account key (connection string AccountKey)",
        r"(?i:AccountKey)\s*=\s*[A-Za-z0-9+/]{86}==",
    ),
    rule(
        "github-pat",
        "GitHub personal access token (classic)",
        r"ghp_[A-Za-z0-9]{36}",
    ),
    rule(
        "github-oauth-token",
        "GitHub OAuth access token",
        r"gho_[A-Za-z0-9]{36}",
    ),
    rule(
        "github-app-token",
        "GitHub App user-to-server or server-to-server token",
        r"gh[us]_[A-Za-z0-9]{36}",
    ),
    rule(
        "github-refresh-token",
        "GitHub refresh token",
        r"ghr_[A-Za-z0-9]{36,76}",
    ),
    rule(
        "github-fine-grained-pat",
        "GitHub fine-grained personal access token",
        r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}",
    ),
    rule(
        "gitlab-pat",
        "GitLab personal access token",
        r"glpat-[A-Za-z0-9_\-]{20}",
    ),
    rule(
        "slack-webhook",
        "Slack incoming webhook URL",
        r"hooks\.slack\.com/services/T[A-Z0-9]{6,12}/B[A-Z0-9]{6,12}/[A-Za-z0-9]{20}",
    ),
    rule(
        "slack-token",
        "Slack bot/user/app token",
        r"xox[abposr]-[0-9A-Za-z]{1,16}-[0-9A-Za-z\-]{10}",
    ),
    rule(
        "stripe-secret-key",
        "Stripe live secret key",
        r"sk_live_[0-9A-Za-z]{24}",
    ),
    rule(
        "stripe-restricted-key",
        "Stripe live restricted key",
        r"rk_live_[0-9A-Za-z]{24}",
    ),
    rule("npm-token", "npm access token", r"npm_[A-Za-z0-9]{36}"),
    rule(
        "pypi-token",
        "PyPI upload token",
        r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50}",
    ),
    rule(
        "anthropic-api-key",
        "Anthropic API key",
        r"sk-ant-(?:api03|admin01)-[A-Za-z0-9_\-]{80}",
    ),
    rule(
        "anthropic-oauth-token",
        "Anthropic OAuth token",
        r"sk-ant-(?:oat01|ort01)-[A-Za-z0-9_\-]{80}",
    ),
    rule(
        "openai-api-key",
        "OpenAI API key",
        r"sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{40}|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})",
    ),
    checked(
        "huggingface-token",
        "Hugging Face access token",
        r"(hf_[A-Za-z0-9]{34,40})",
        mixed_case,
    ),
    rule("twilio-api-key", "Twilio API key", r"SK[0-9a-f]{32}"),
    rule(
        "sendgrid-api-key",
        "SendGrid API key",
        r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}",
    ),
    rule("mailgun-api-key", "Mailgun API key", r"key-[0-9a-f]{32}"),
    rule(
        "digitalocean-token",
        "DigitalOcean token",
        r"do[por]_v1_[a-f0-9]{64}",
    ),
    rule(
        "shopify-token",
        "Shopify access token",
        r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}",
    ),
    checked(
        "discord-bot-token",
        "Discord bot token",
        // The id part is found by the check among the run's last 24-28 bytes: a pattern
        // starting at a common letter would keep many counters live and slow the set down.
        r"([A-Za-z0-9_\-]{24,28})\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,38}",
        discord_user_id,
    ),
    rule(
        "telegram-bot-token",
        "Telegram bot token",
        r"[0-9]{8,10}:AA[A-Za-z0-9_\-]{33}",
    ),
    checked(
        "jwt",
        "JSON Web Token",
        r"(eyJ[A-Za-z0-9_\-]{8,})\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{16}",
        jwt_header,
    ),
    checked(
        "generic-secret-assignment",
        "High-entropy value assigned to a password/secret/api_key name",
        r#"(?i:password|passwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token)\\?["']?\s*[:=]\s*\\?["']?([A-Za-z0-9+/=_\-.~!@#$%^*]{16,128})"#,
        random_looking,
    ),
];

/// Rule table as shown to users (git-gate, docs).
pub fn rules() -> &'static [RuleInfo] {
    static INFOS: LazyLock<Vec<RuleInfo>> =
        LazyLock::new(|| RULES.iter().map(|r| r.info).collect());
    &INFOS
}

pub(crate) struct Compiled {
    /// One pass over the input tells which rules could have fired.
    pub set: RegexSet,
    /// Individual regexes, only for rules with a post-match check (index = rule index).
    pub checked: Vec<Option<Regex>>,
}

// Limits well above what the table needs; they exist so a bad edit fails loudly in tests.
const SIZE_LIMIT: usize = 64 << 20;
const DFA_SIZE_LIMIT: usize = 16 << 20;

pub(crate) static COMPILED: LazyLock<Compiled> = LazyLock::new(|| {
    // The patterns are constants covered by tests; failing here is a build defect, not input.
    compile().expect("built-in secret rules must compile")
});

pub(crate) fn compile() -> Result<Compiled, regex::Error> {
    let set = RegexSetBuilder::new(RULES.iter().map(|r| r.pattern))
        .unicode(false)
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .build()?;
    let mut checked = Vec::with_capacity(RULES.len());
    for r in RULES {
        checked.push(match r.check {
            Some(_) => Some(
                RegexBuilder::new(r.pattern)
                    .unicode(false)
                    .size_limit(SIZE_LIMIT)
                    .build()?,
            ),
            None => None,
        });
    }
    Ok(Compiled { set, checked })
}

/// Shannon entropy in bits per byte.
pub(crate) fn entropy(v: &[u8]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in v {
        counts[b as usize] += 1;
    }
    let n = v.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

fn high_entropy(v: &[u8]) -> bool {
    entropy(v) >= 3.5
}

fn mixed_case(v: &[u8]) -> bool {
    v.iter().any(u8::is_ascii_uppercase) && v.iter().any(u8::is_ascii_lowercase)
}

/// Random-looking: all three of upper/lower/digit (or a long hex string), no template
/// syntax, and high entropy. Keeps `password=changeme` and `${VAR}` quiet.
fn random_looking(v: &[u8]) -> bool {
    let has = |f: fn(&u8) -> bool| v.iter().any(f);
    let classes =
        has(u8::is_ascii_uppercase) && has(u8::is_ascii_lowercase) && has(u8::is_ascii_digit);
    let long_hex = v.len() >= 32 && v.iter().all(u8::is_ascii_hexdigit) && has(u8::is_ascii_digit);
    let template = v.windows(2).any(|w| w == b"${" || w == b"{{");
    (classes || long_hex) && !template && entropy(v) >= 3.5
}

/// Discord bot tokens start with the bot's user id (a decimal snowflake) in base64. `v` may
/// carry padding glued before the id: every suffix of an id's length is tried.
fn discord_user_id(v: &[u8]) -> bool {
    (24..=28.min(v.len())).any(|n| {
        let cand = &v[v.len() - n..];
        matches!(cand.first(), Some(b'M' | b'N' | b'O')) && {
            let id = crate::scan::decode::base64_lenient(cand);
            (17..=20).contains(&id.len()) && id.iter().all(u8::is_ascii_digit)
        }
    })
}

/// A JWT header is base64url JSON naming its algorithm.
fn jwt_header(v: &[u8]) -> bool {
    let header = crate::scan::decode::base64_lenient(v);
    match serde_json::from_slice::<serde_json::Value>(&header) {
        Ok(serde_json::Value::Object(map)) => map.get("alg").is_some_and(|a| a.is_string()),
        _ => false,
    }
}
