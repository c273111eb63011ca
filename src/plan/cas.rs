//! The operator's extra CA certificates (for TLS-intercepting proxies), read once at plan
//! time: every `*.crt` in the host's system dir plus `BOT_BOTTLE_EXTRA_CA_CERTS` (a PEM file or
//! a directory of them). They go into both images and, for upstream verification, to egress;
//! the backend never reads them from the host again.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use super::{HostEnv, PlanError};
use crate::envvars;

/// Where a Debian-style host keeps extra CA certificates.
pub(crate) const SYSTEM_EXTRA_CA_DIR: &str = "/usr/local/share/ca-certificates";

/// The extra CAs of this host, one PEM block each, deduplicated, in a stable order.
pub fn extra_cas(host: &HostEnv) -> Result<Vec<Vec<u8>>, PlanError> {
    let extra = host
        .var_nonempty(envvars::EXTRA_CA_CERTS)
        .map(PathBuf::from);
    let system = host.system_ca_dir.as_deref().unwrap_or(Path::new(""));
    collect_extra_cas(system, extra.as_deref())
}

/// Splits PEM text into one `-----BEGIN CERTIFICATE-----` block per entry.
pub(crate) fn split_pem_certs(text: &[u8]) -> Vec<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(text);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start..];
        let Some(end) = after.find(END) else { break };
        let block = &after[..end + END.len()];
        out.push(format!("{block}\n").into_bytes());
        rest = &after[end + END.len()..];
    }
    out
}

fn read_pem_file(path: &Path) -> Result<Vec<Vec<u8>>, PlanError> {
    let bytes = fs::read(path).map_err(|source| PlanError::ExtraCaRead {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(split_pem_certs(&bytes))
}

/// Files under `dir` (recursively) whose extension is one of `exts`, sorted.
fn cert_files(dir: &Path, exts: &[&str]) -> Result<Vec<PathBuf>, PlanError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = fs::read_dir(&d).map_err(|source| PlanError::ExtraCaRead {
            path: d.clone(),
            source,
        })?;
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(OsStr::to_str)
                .is_some_and(|x| exts.contains(&x))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The extra CA certificates for image builds: every `*.crt` under `system_dir` (skipped when
/// absent) plus `extra` (a PEM file, or a directory of `*.crt`/`*.pem`), one PEM block per
/// entry, without duplicates, in a stable order.
pub(crate) fn collect_extra_cas(
    system_dir: &Path,
    extra: Option<&Path>,
) -> Result<Vec<Vec<u8>>, PlanError> {
    let mut certs: Vec<Vec<u8>> = Vec::new();
    if system_dir.is_dir() {
        for f in cert_files(system_dir, &["crt"])? {
            certs.extend(read_pem_file(&f)?);
        }
    }
    if let Some(p) = extra {
        let found = if p.is_dir() {
            let mut v = Vec::new();
            for f in cert_files(p, &["crt", "pem"])? {
                v.extend(read_pem_file(&f)?);
            }
            v
        } else {
            read_pem_file(p)?
        };
        if found.is_empty() {
            return Err(PlanError::ExtraCaNotPem {
                path: p.to_path_buf(),
            });
        }
        certs.extend(found);
    }
    let mut seen = std::collections::BTreeSet::new();
    certs.retain(|c| seen.insert(c.clone()));
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM_A: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    const PEM_B: &str = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";

    #[test]
    fn extra_cas_from_system_dir_and_env_file_or_dir() {
        let sys = tempfile::tempdir().unwrap();
        fs::create_dir(sys.path().join("corp")).unwrap();
        fs::write(sys.path().join("corp/a.crt"), PEM_A).unwrap();
        fs::write(sys.path().join("ignored.pem"), PEM_B).unwrap(); // not *.crt: ignored there
        assert_eq!(
            collect_extra_cas(sys.path(), None).unwrap(),
            [PEM_A.as_bytes()]
        );

        let bundle = sys.path().join("bundle.pem");
        fs::write(&bundle, format!("junk\n{PEM_A}{PEM_B}")).unwrap();
        let got = collect_extra_cas(sys.path(), Some(&bundle)).unwrap();
        assert_eq!(
            got,
            [PEM_A.as_bytes(), PEM_B.as_bytes()],
            "split and deduplicated"
        );

        let extra_dir = tempfile::tempdir().unwrap();
        fs::write(extra_dir.path().join("b.pem"), PEM_B).unwrap();
        let got = collect_extra_cas(Path::new("/nonexistent"), Some(extra_dir.path())).unwrap();
        assert_eq!(got, [PEM_B.as_bytes()]);

        let not_pem = sys.path().join("notes.txt");
        fs::write(&not_pem, "hello").unwrap();
        let err = collect_extra_cas(sys.path(), Some(&not_pem)).unwrap_err();
        assert!(
            err.to_string().contains("BOT_BOTTLE_EXTRA_CA_CERTS"),
            "{err}"
        );
        assert!(matches!(
            collect_extra_cas(sys.path(), Some(Path::new("/nonexistent/ca.pem"))),
            Err(PlanError::ExtraCaRead { .. })
        ));
    }

    #[test]
    fn the_plan_reads_the_env_file_once_and_skips_a_missing_system_dir() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("corp.pem");
        fs::write(&f, PEM_A).unwrap();
        let mut h = crate::plan::testutil::host();
        assert!(extra_cas(&h).unwrap().is_empty());
        h.vars
            .insert(envvars::EXTRA_CA_CERTS.into(), f.display().to_string());
        assert_eq!(extra_cas(&h).unwrap(), [PEM_A.as_bytes()]);
        h.system_ca_dir = Some(dir.path().to_path_buf());
        // The system dir takes `*.crt` only, so the `.pem` there is not counted twice.
        assert_eq!(extra_cas(&h).unwrap(), [PEM_A.as_bytes()]);
    }
}
