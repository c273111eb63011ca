//! Forwarding the host's Codex login without handing the agent a credential.
//!
//! The host `auth.json` must hold a ChatGPT/device login whose access token (a JWT) has not
//! expired. Egress receives that access token; the agent receives a dummy `auth.json` with
//! the same shape, account id, plan type and `exp`, in which every secret (access, id and
//! refresh tokens, API key, personal claims) is a placeholder. Codex then believes it is
//! logged in, and egress replaces the placeholder bearer on the way out.
//!
//! Only [`read_host_auth`] touches the file system; the rest is pure.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE_NO_PAD, URL_SAFE_NO_PAD_INDIFFERENT};
use serde_json::{Map, Value, json};

use crate::secret::Secret;

/// What fills every redacted string.
pub(crate) const PLACEHOLDER: &str = "bot-bottle-placeholder";
/// What fills every redacted e-mail address.
pub(crate) const PLACEHOLDER_EMAIL: &str = "bot-bottle@example.invalid";
/// Label used as the route `token_ref` for the forwarded Codex token (not a host variable).
pub(crate) const TOKEN_SOURCE: &str = "codex host login";

const AUTH_CLAIM: &str = "https://api.openai.com/auth";
const PROFILE_CLAIM: &str = "https://api.openai.com/profile";

#[derive(Debug, thiserror::Error)]
pub enum CodexAuthError {
    #[error(
        "codex host credentials: neither $CODEX_HOME nor $HOME is set; set one so the host `auth.json` can be found"
    )]
    NoLocation,
    #[error("codex host credentials: no auth file at {}; run `codex login --device-auth` on the host or drop `forward_host_credentials`", .0.display())]
    Missing(PathBuf),
    #[error("codex host credentials: cannot read {}: {reason}; check the file's permissions", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("codex host credentials: {} is not a JSON object; run `codex login --device-auth` on the host to rewrite it", .0.display())]
    NotJson(PathBuf),
    #[error("codex host credentials: {} holds an API-key login, not a ChatGPT/device login; run `codex login --device-auth` on the host", .0.display())]
    ApiKeyOnly(PathBuf),
    #[error("codex host credentials: {} has no `tokens.access_token`; run `codex login --device-auth` on the host", .0.display())]
    NoAccessToken(PathBuf),
    #[error("codex host credentials: `tokens.access_token` in {} is not a JWT with `exp`; run `codex login --device-auth` on the host", .0.display())]
    NotJwt(PathBuf),
    #[error("codex host credentials: the access token in {} has expired; run `codex` (or `codex login`) on the host to refresh it, then start again", .0.display())]
    Expired(PathBuf),
}

/// The host login, ready to forward: the real token for egress, the dummy file for the agent.
#[derive(Debug, Clone)]
pub(crate) struct ForwardedCodexAuth {
    pub access_token: Secret,
    /// Contents of the guest `auth.json`; holds no secret.
    pub(crate) dummy_auth_json: String,
}

/// `$CODEX_HOME/auth.json` (a leading `~/` expanded), else `<home>/.codex/auth.json`.
pub(crate) fn auth_path(
    codex_home: Option<&str>,
    home: Option<&Path>,
) -> Result<PathBuf, CodexAuthError> {
    match codex_home.filter(|c| !c.is_empty()) {
        Some(c) => {
            let dir = match c.strip_prefix("~/") {
                Some(rest) => home.ok_or(CodexAuthError::NoLocation)?.join(rest),
                None if c == "~" => home.ok_or(CodexAuthError::NoLocation)?.to_path_buf(),
                None => PathBuf::from(c),
            };
            Ok(dir.join("auth.json"))
        }
        None => Ok(home
            .ok_or(CodexAuthError::NoLocation)?
            .join(".codex")
            .join("auth.json")),
    }
}

/// Read and check the host file at `path`.
pub(crate) fn read_host_auth(
    path: &Path,
    now_unix: u64,
) -> Result<ForwardedCodexAuth, CodexAuthError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CodexAuthError::Missing(path.to_path_buf()));
        }
        Err(e) => {
            return Err(CodexAuthError::Read {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
        }
    };
    forward_from_json(&text, path, now_unix)
}

/// Check a host `auth.json` text and build what is forwarded. `path` is only for messages.
pub(crate) fn forward_from_json(
    text: &str,
    path: &Path,
    now_unix: u64,
) -> Result<ForwardedCodexAuth, CodexAuthError> {
    let raw: Value =
        serde_json::from_str(text).map_err(|_| CodexAuthError::NotJson(path.to_path_buf()))?;
    let obj = raw
        .as_object()
        .ok_or_else(|| CodexAuthError::NotJson(path.to_path_buf()))?;
    let mode = obj.get("auth_mode").and_then(Value::as_str);
    let access = obj
        .get("tokens")
        .and_then(|t| t.get("access_token"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty());
    if matches!(mode, Some(m) if m.eq_ignore_ascii_case("api_key") || m.eq_ignore_ascii_case("apikey"))
    {
        return Err(CodexAuthError::ApiKeyOnly(path.to_path_buf()));
    }
    let Some(access) = access else {
        let has_key = obj
            .get("OPENAI_API_KEY")
            .and_then(Value::as_str)
            .is_some_and(|k| !k.is_empty());
        return Err(if has_key {
            CodexAuthError::ApiKeyOnly(path.to_path_buf())
        } else {
            CodexAuthError::NoAccessToken(path.to_path_buf())
        });
    };
    let exp = jwt_exp(access).ok_or_else(|| CodexAuthError::NotJwt(path.to_path_buf()))?;
    if exp <= now_unix {
        return Err(CodexAuthError::Expired(path.to_path_buf()));
    }
    Ok(ForwardedCodexAuth {
        access_token: Secret::new(access),
        dummy_auth_json: dummy_auth_json(obj, exp, now_unix),
    })
}

/// The payload of a JWT (`header.payload.signature`), decoded without checking the signature.
pub(crate) fn jwt_payload(token: &str) -> Option<Map<String, Value>> {
    let mut parts = token.split('.');
    let (_header, payload) = (parts.next()?, parts.next()?);
    let bytes = URL_SAFE_NO_PAD_INDIFFERENT.decode(payload).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The `exp` claim of a JWT, in whole seconds.
pub(crate) fn jwt_exp(token: &str) -> Option<u64> {
    let exp = jwt_payload(token)?.get("exp")?.clone();
    match exp {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        _ => None,
    }
}

/// The guest `auth.json`: the host object with every secret replaced. `exp` is the host
/// access token's expiry, so Codex's own refresh timing follows the real token.
pub(crate) fn dummy_auth_json(host: &Map<String, Value>, exp: u64, now_unix: u64) -> String {
    let mut out = Map::new();
    for (key, value) in host {
        let redacted = match key.as_str() {
            "auth_mode" if value.is_string() => value.clone(),
            "OPENAI_API_KEY" => Value::Null,
            "last_refresh" => Value::String(rfc3339(now_unix)),
            "tokens" => redact_tokens(value, exp),
            _ => placeholder_like(value),
        };
        out.insert(key.clone(), redacted);
    }
    let mut text = serde_json::to_string_pretty(&Value::Object(out)).unwrap_or_default();
    text.push('\n');
    text
}

fn redact_tokens(value: &Value, exp: u64) -> Value {
    let Some(tokens) = value.as_object() else {
        return placeholder_like(value);
    };
    let account_id = tokens
        .get("account_id")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty());
    let mut out = Map::new();
    for (key, inner) in tokens {
        let redacted = match key.as_str() {
            "access_token" | "id_token" => {
                let claims = inner.as_str().and_then(jwt_payload).unwrap_or_default();
                Value::String(encode_dummy_jwt(&redact_claims(&claims, exp, account_id)))
            }
            "account_id" if account_id.is_some() => inner.clone(),
            _ => placeholder_like(inner),
        };
        out.insert(key.clone(), redacted);
    }
    Value::Object(out)
}

/// JWT claims with identifiers and personal data replaced; times, audiences, scopes, the
/// ChatGPT plan type and account id kept (Codex reads them; none is a credential).
fn redact_claims(
    claims: &Map<String, Value>,
    exp: u64,
    account_id: Option<&str>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in claims {
        let redacted = match key.as_str() {
            AUTH_CLAIM => redact_auth_claim(value),
            PROFILE_CLAIM => json!({
                "email": PLACEHOLDER_EMAIL,
                "email_verified": value.get("email_verified").and_then(Value::as_bool).unwrap_or(true),
            }),
            "email" => Value::String(PLACEHOLDER_EMAIL.into()),
            "iat" | "nbf" | "auth_time" | "pwd_auth_time" if value.is_number() => value.clone(),
            "aud" | "scp" | "amr" if is_string_list(value) || value.is_string() => value.clone(),
            _ => placeholder_like(value),
        };
        out.insert(key.clone(), redacted);
    }
    out.insert("exp".into(), Value::from(exp));
    out.entry("sub")
        .or_insert_with(|| Value::String(PLACEHOLDER.into()));
    if let Some(Value::Object(auth)) = out.get_mut(AUTH_CLAIM) {
        if let Some(id) = account_id {
            auth.entry("chatgpt_account_id")
                .or_insert_with(|| Value::String(id.into()));
        }
    }
    out
}

fn redact_auth_claim(value: &Value) -> Value {
    let Some(auth) = value.as_object() else {
        return Value::Object(Map::new());
    };
    let mut out = Map::new();
    for (key, inner) in auth {
        let keep = matches!(key.as_str(), "chatgpt_plan_type" | "chatgpt_account_id")
            && inner.as_str().is_some_and(|s| !s.is_empty());
        out.insert(
            key.clone(),
            if keep {
                inner.clone()
            } else {
                placeholder_like(inner)
            },
        );
    }
    Value::Object(out)
}

fn is_string_list(v: &Value) -> bool {
    v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
}

/// A value of the same JSON type holding nothing: booleans and null are kept (never secret).
fn placeholder_like(value: &Value) -> Value {
    match value {
        Value::Null | Value::Bool(_) => value.clone(),
        Value::Number(_) => Value::from(0),
        Value::String(_) => Value::String(PLACEHOLDER.into()),
        Value::Array(_) => Value::Array(Vec::new()),
        Value::Object(_) => Value::Object(Map::new()),
    }
}

fn encode_dummy_jwt(claims: &Map<String, Value>) -> String {
    let header = json!({"alg": "none", "typ": "JWT"});
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap_or_default());
    format!(
        "{}.{}.{}",
        enc(&header),
        enc(&Value::Object(claims.clone())),
        "placeholder"
    )
}

fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const NOW: u64 = 1_800_000_000;
    pub(crate) const ACCOUNT: &str = "acct-5f1e2d3c-public";
    pub(crate) const REFRESH: &str = "rt_REFRESHsecretVALUE0123456789";
    pub(crate) const API_KEY: &str = "sk-proj-APIKEYsecret0123456789";
    pub(crate) const EMAIL: &str = "person@private.example";
    pub(crate) const USER_ID: &str = "user-PRIVATEid42";

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    /// A JWT with a realistic header/claims shape and a random-looking signature.
    pub(crate) fn jwt(exp: u64, sig: &str) -> String {
        let header = json!({"alg": "RS256", "kid": "key-1", "typ": "JWT"});
        let claims = json!({
            "aud": ["https://api.openai.com/v1"],
            "client_id": "app_CLIENTsecretish",
            "exp": exp,
            "iat": exp - 864_000,
            "iss": "https://auth.openai.com",
            "jti": "jti-UNIQUEvalue",
            "scp": ["openid", "profile", "email", "offline_access"],
            "session_id": "authsess_SESSIONsecret",
            "sub": USER_ID,
            "email": EMAIL,
            "https://api.openai.com/auth": {
                "chatgpt_account_id": ACCOUNT,
                "chatgpt_plan_type": "plus",
                "chatgpt_user_id": USER_ID,
                "user_id": USER_ID,
                "localhost": true
            },
            "https://api.openai.com/profile": {"email": EMAIL, "email_verified": true}
        });
        format!("{}.{}.{sig}", b64(&header), b64(&claims))
    }

    pub(crate) fn sample_auth(access_exp: u64) -> (String, String, String) {
        let access = jwt(access_exp, "ACCESSsignatureXYZ0123456789abcdef");
        let id = jwt(access_exp + 100, "IDsignatureQRS0123456789abcdef");
        let text = json!({
            "auth_mode": "chatgpt",
            "OPENAI_API_KEY": null,
            "last_refresh": "2027-01-01T00:00:00.000000Z",
            "tokens": {
                "access_token": access,
                "id_token": id,
                "refresh_token": REFRESH,
                "account_id": ACCOUNT
            }
        })
        .to_string();
        (text, access, id)
    }

    fn p() -> &'static Path {
        Path::new("/h/.codex/auth.json")
    }

    #[test]
    fn valid_chatgpt_login_forwards_the_real_token_and_its_exp() {
        let exp = NOW + 3600;
        let (text, access, _) = sample_auth(exp);
        let f = forward_from_json(&text, p(), NOW).unwrap();
        assert_eq!(f.access_token.expose(), access);
    }

    #[test]
    fn dummy_keeps_shape_account_plan_and_exp_but_no_secret() {
        let exp = NOW + 3600;
        let (text, access, id) = sample_auth(exp);
        let f = forward_from_json(&text, p(), NOW).unwrap();
        let dummy: Value = serde_json::from_str(&f.dummy_auth_json).unwrap();
        let host: Value = serde_json::from_str(&text).unwrap();
        // Same keys at the top level and in `tokens`.
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&dummy), keys(&host));
        assert_eq!(keys(&dummy["tokens"]), keys(&host["tokens"]));
        assert_eq!(dummy["auth_mode"], "chatgpt");
        assert_eq!(dummy["tokens"]["account_id"], ACCOUNT);
        assert_eq!(dummy["tokens"]["refresh_token"], PLACEHOLDER);
        assert!(dummy["OPENAI_API_KEY"].is_null());
        for tok in ["access_token", "id_token"] {
            let t = dummy["tokens"][tok].as_str().unwrap();
            assert_eq!(jwt_exp(t), Some(exp), "{tok} carries the real access exp");
            let claims = jwt_payload(t).unwrap();
            assert_eq!(claims[AUTH_CLAIM]["chatgpt_plan_type"], "plus");
            assert_eq!(claims[AUTH_CLAIM]["chatgpt_account_id"], ACCOUNT);
            assert_eq!(claims["email"], PLACEHOLDER_EMAIL);
        }
        let secrets = [
            access.as_str(),
            access.split('.').nth(1).unwrap(),
            access.split('.').nth(2).unwrap(),
            id.as_str(),
            id.split('.').nth(2).unwrap(),
            REFRESH,
            EMAIL,
            USER_ID,
            "SESSIONsecret",
            "CLIENTsecretish",
            "UNIQUEvalue",
            "2027-01-01",
        ];
        for s in secrets {
            assert!(!f.dummy_auth_json.contains(s), "dummy leaks {s}");
        }
        // The decoded payloads must not hide a secret either.
        for tok in ["access_token", "id_token"] {
            let claims = jwt_payload(dummy["tokens"][tok].as_str().unwrap()).unwrap();
            let decoded = Value::Object(claims).to_string();
            for s in [EMAIL, USER_ID, "SESSIONsecret", "CLIENTsecretish"] {
                assert!(!decoded.contains(s), "{tok} payload leaks {s}");
            }
        }
        assert!(format!("{f:?}").find(&access).is_none());
    }

    #[test]
    fn unknown_fields_are_replaced_by_type() {
        let (text, _, _) = sample_auth(NOW + 10);
        let mut v: Value = serde_json::from_str(&text).unwrap();
        v["extra_secret"] = json!("s3cr3t-extra");
        v["tokens"]["other"] = json!({"nested": "s3cr3t-nested"});
        v["flag"] = json!(true);
        v["count"] = json!(7);
        let f = forward_from_json(&v.to_string(), p(), NOW).unwrap();
        let d: Value = serde_json::from_str(&f.dummy_auth_json).unwrap();
        assert_eq!(d["extra_secret"], PLACEHOLDER);
        assert_eq!(d["tokens"]["other"], json!({}));
        assert_eq!(d["flag"], true);
        assert_eq!(d["count"], 0);
        assert!(!f.dummy_auth_json.contains("s3cr3t"));
    }

    #[test]
    fn expired_token_is_refused() {
        let (text, _, _) = sample_auth(NOW - 1);
        assert!(matches!(
            forward_from_json(&text, p(), NOW),
            Err(CodexAuthError::Expired(_))
        ));
        let (text, _, _) = sample_auth(NOW);
        assert!(matches!(
            forward_from_json(&text, p(), NOW),
            Err(CodexAuthError::Expired(_))
        ));
    }

    #[test]
    fn api_key_login_is_refused_clearly_without_showing_the_key() {
        let by_mode = json!({"auth_mode": "apikey", "OPENAI_API_KEY": API_KEY}).to_string();
        let by_shape = json!({"OPENAI_API_KEY": API_KEY, "tokens": null}).to_string();
        for text in [by_mode, by_shape] {
            let err = forward_from_json(&text, p(), NOW).unwrap_err();
            assert!(matches!(err, CodexAuthError::ApiKeyOnly(_)), "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains("codex login --device-auth") && !msg.contains(API_KEY),
                "{msg}"
            );
        }
    }

    #[test]
    fn api_key_mode_is_refused_even_with_tokens() {
        let (text, _, _) = sample_auth(NOW + 10);
        let mut v: Value = serde_json::from_str(&text).unwrap();
        v["auth_mode"] = json!("api_key");
        assert!(matches!(
            forward_from_json(&v.to_string(), p(), NOW),
            Err(CodexAuthError::ApiKeyOnly(_))
        ));
    }

    #[test]
    fn missing_or_malformed_tokens_are_refused() {
        let no_tokens = json!({"auth_mode": "chatgpt"}).to_string();
        assert!(matches!(
            forward_from_json(&no_tokens, p(), NOW),
            Err(CodexAuthError::NoAccessToken(_))
        ));
        let not_jwt = json!({"tokens": {"access_token": "opaque-token"}}).to_string();
        assert!(matches!(
            forward_from_json(&not_jwt, p(), NOW),
            Err(CodexAuthError::NotJwt(_))
        ));
        let no_exp = format!("{}.{}.sig", b64(&json!({})), b64(&json!({"sub": "x"})));
        let no_exp = json!({"tokens": {"access_token": no_exp}}).to_string();
        assert!(matches!(
            forward_from_json(&no_exp, p(), NOW),
            Err(CodexAuthError::NotJwt(_))
        ));
        assert!(matches!(
            forward_from_json("[1]", p(), NOW),
            Err(CodexAuthError::NotJson(_))
        ));
        assert!(matches!(
            forward_from_json("{", p(), NOW),
            Err(CodexAuthError::NotJson(_))
        ));
    }

    #[test]
    fn jwt_exp_accepts_padded_payloads_and_rejects_garbage() {
        let padded = format!(
            "x.{}.y",
            base64::engine::general_purpose::URL_SAFE.encode(br#"{"exp":12345}"#)
        );
        assert_eq!(jwt_exp(&padded), Some(12345));
        assert_eq!(jwt_exp("nodots"), None);
        assert_eq!(jwt_exp("a.!!!.c"), None);
        assert_eq!(
            jwt_exp(&format!("a.{}.c", b64(&json!({"exp": "soon"})))),
            None
        );
    }

    #[test]
    fn auth_path_prefers_codex_home() {
        let home = Path::new("/home/op");
        assert_eq!(
            auth_path(Some("/x/codex"), Some(home)).unwrap(),
            PathBuf::from("/x/codex/auth.json")
        );
        assert_eq!(
            auth_path(Some("~/cx"), Some(home)).unwrap(),
            PathBuf::from("/home/op/cx/auth.json")
        );
        assert_eq!(
            auth_path(None, Some(home)).unwrap(),
            PathBuf::from("/home/op/.codex/auth.json")
        );
        assert_eq!(
            auth_path(Some(""), Some(home)).unwrap(),
            PathBuf::from("/home/op/.codex/auth.json")
        );
        assert!(matches!(
            auth_path(None, None),
            Err(CodexAuthError::NoLocation)
        ));
    }

    #[test]
    fn read_host_auth_reports_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        assert!(matches!(
            read_host_auth(&path, NOW),
            Err(CodexAuthError::Missing(_))
        ));
        let (text, _, _) = sample_auth(NOW + 60);
        std::fs::write(&path, text).unwrap();
        assert!(read_host_auth(&path, NOW).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_input_never_panics(t in ".{0,200}") {
            let _ = forward_from_json(&t, p(), NOW);
            let _ = jwt_exp(&t);
        }

        #[test]
        fn arbitrary_json_auth_never_panics(
            v in proptest::collection::btree_map("[a-z_]{1,8}", proptest::prelude::any::<i32>(), 0..5)
        ) {
            let text = json!({"tokens": v, "auth_mode": "chatgpt"}).to_string();
            let _ = forward_from_json(&text, p(), NOW);
        }
    }
}
