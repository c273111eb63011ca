//! The per-bottle certificate authority and the leaf certificates minted from it.
//!
//! The CLI mints the CA at launch ([`mint_bottle_ca`]) and hands it to the daemon, which signs
//! one leaf per allowlisted host on first use and keeps it (with its TLS server config) cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::EgressError;

fn ca_err(what: &str, e: impl std::fmt::Display) -> EgressError {
    EgressError::Ca(format!("{what}: {e}"))
}

fn current_year() -> i32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    1970 + i32::try_from(secs / 31_556_952).unwrap_or(0)
}

/// Mint a fresh bottle CA: returns `(certificate PEM, private key PEM)`.
///
/// The key never leaves the host state dir and the sidecar bundle; the certificate is what the
/// agent trusts.
pub fn mint_bottle_ca() -> Result<(String, String), EgressError> {
    let key = KeyPair::generate().map_err(|e| ca_err("cannot generate the CA key", e))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "bot-bottle egress CA");
    dn.push(DnType::OrganizationName, "bot-bottle");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let year = current_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
    let cert = params
        .self_signed(&key)
        .map_err(|e| ca_err("cannot sign the CA certificate", e))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A loaded bottle CA plus the per-host leaf cache.
pub(crate) struct BottleCa {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    /// One key for every leaf: minting stays cheap and the cache small.
    leaf_key: KeyPair,
    cache: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

impl std::fmt::Debug for BottleCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BottleCa(<key redacted>)")
    }
}

/// Cached leaf configs kept at most; the route table is far smaller.
const LEAF_CACHE_MAX: usize = 4096;

impl BottleCa {
    /// Load the CA from its PEM certificate and key.
    pub(crate) fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, EgressError> {
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| ca_err("cannot read the CA key (expected PKCS#8 PEM)", e))?;
        let ca_der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| ca_err("cannot read the CA certificate PEM", e))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| ca_err("cannot use the CA certificate", e))?;
        let leaf_key =
            KeyPair::generate().map_err(|e| ca_err("cannot generate the leaf key", e))?;
        Ok(BottleCa {
            issuer,
            ca_der,
            leaf_key,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// TLS server config presenting a leaf for `host` (minted once, then cached).
    pub(crate) fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, EgressError> {
        if let Some(c) = self.cache.lock().ok().and_then(|m| m.get(host).cloned()) {
            return Ok(c);
        }
        let config = Arc::new(self.mint_leaf_config(host)?);
        if let Ok(mut m) = self.cache.lock() {
            if m.len() >= LEAF_CACHE_MAX {
                m.clear();
            }
            m.insert(host.to_string(), config.clone());
        }
        Ok(config)
    }

    fn mint_leaf_config(&self, host: &str) -> Result<ServerConfig, EgressError> {
        let mut params = CertificateParams::default();
        let san = match super::ssrf::parse_ip_literal(host) {
            Some(ip) => SanType::IpAddress(ip),
            None => SanType::DnsName(host.try_into().map_err(|e| ca_err("leaf host name", e))?),
        };
        params.subject_alt_names = vec![san];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let year = current_year();
        params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
        params.not_after = rcgen::date_time_ymd(year + 1, 12, 31);
        let leaf = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(|e| ca_err("cannot sign a leaf", e))?;
        let chain = vec![leaf.der().clone(), self.ca_der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(agent_facing_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| EgressError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| EgressError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Our order wins: AES-128-GCM/SHA-256 first keeps the per-connection key schedule on
        // SHA-256 (hardware-accelerated on most CPUs) instead of SHA-384.
        config.ignore_client_order = true;
        // Sessions resume from the stateful cache (one ticket is used per reconnect, so one
        // ticket per handshake keeps the client's supply level); a resumed handshake skips the
        // leaf signature and the client's chain check and still does a fresh key exchange.
        config.send_tls13_tickets = 1;
        Ok(config)
    }
}

/// The ring provider with SHA-256 cipher suites preferred.
fn agent_facing_provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|cs| match cs.suite() {
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
        rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => 1,
        rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => 2,
        _ => 3,
    });
    Arc::new(provider)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ca_loads_and_signs_leaves() {
        let (cert, key) = mint_bottle_ca().unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.contains("PRIVATE KEY"));
        let ca = BottleCa::from_pem(&cert, &key).unwrap();
        let a = ca.server_config("api.example.com").unwrap();
        let b = ca.server_config("api.example.com").unwrap();
        assert!(Arc::ptr_eq(&a, &b), "leaf config is cached per host");
        let c = ca.server_config("other.example.com").unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert!(!format!("{ca:?}").contains("PRIVATE"));
    }

    #[test]
    fn two_mints_differ() {
        let (c1, k1) = mint_bottle_ca().unwrap();
        let (c2, k2) = mint_bottle_ca().unwrap();
        assert_ne!(c1, c2);
        assert_ne!(k1, k2);
    }

    #[test]
    fn garbage_pem_is_a_clear_error() {
        let err = BottleCa::from_pem("nope", "nope").unwrap_err().to_string();
        assert!(err.contains("CA"), "{err}");
    }
}
