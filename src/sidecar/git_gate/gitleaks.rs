//! gitleaks as a second opinion on pushes, when the sidecar image has it.
//!
//! The gate's own scanner always runs first and decides on its own; gitleaks can only add a
//! refusal, never lift one. It is found once, when the gate starts (`--gitleaks auto` looks on
//! `PATH`, a path names the program, `off` disables it), and the hook runs it over the same
//! range (`<new…> --not --all`) in the receiving repo. Its configuration cannot come from the
//! agent: it runs in the gate's own bare mirror (which holds no work tree, so no
//! `.gitleaks.toml` or `.gitleaksignore` of the push is read) with `GITLEAKS_CONFIG` removed.
//! Findings are reported redacted: rule, commit and file, never the value. Any other outcome
//! than "clean" or "leaks found" refuses the push (fail closed).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use super::GateError;

/// How the gate was told to find gitleaks (`--gitleaks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GitleaksOpt {
    /// `gitleaks` on `PATH` when it is there; none otherwise.
    Auto,
    Off,
    Program(PathBuf),
}

impl std::str::FromStr for GitleaksOpt {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(GitleaksOpt::Auto),
            "off" => Ok(GitleaksOpt::Off),
            "" => Err("give `auto`, `off` or the path of the gitleaks program".into()),
            p => Ok(GitleaksOpt::Program(PathBuf::from(p))),
        }
    }
}

/// `program` on `PATH`, as the gate's children would find it.
fn on_path(program: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path?)
        .map(|d| d.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The gitleaks program to run, with its version line; `None` when there is none to use. A
/// program named explicitly that does not answer `version` is an error (the operator asked
/// for it); under `auto` a missing one is simply absent.
pub(crate) fn resolve(
    opt: &GitleaksOpt,
    path: Option<&std::ffi::OsStr>,
) -> Result<Option<(PathBuf, String)>, GateError> {
    let program = match opt {
        GitleaksOpt::Off => return Ok(None),
        GitleaksOpt::Auto => match on_path("gitleaks", path) {
            Some(p) => p,
            None => return Ok(None),
        },
        GitleaksOpt::Program(p) => p.clone(),
    };
    let out = Command::new(&program)
        .arg("version")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| GateError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(GateError::Git {
            what: format!("`{} version`", program.display()),
            stderr: super::upstream::last_line(&out.stderr),
        });
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(Some((program, version)))
}

/// One finding of gitleaks' JSON report (the fields the refusal names).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Leak {
    #[serde(rename = "RuleID", default)]
    pub rule: String,
    #[serde(rename = "Commit", default)]
    pub commit: String,
    #[serde(rename = "File", default)]
    pub file: String,
}

impl std::fmt::Display for Leak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "gitleaks rule {} in commit {}, {}",
            self.rule, self.commit, self.file
        )
    }
}

/// Run gitleaks over the commits reachable from `news` and not in the repo yet. `repo` is the
/// receiving repo (the hook's cwd); `report` a scratch file the gate owns.
pub(crate) fn check(
    program: &Path,
    repo: &Path,
    news: &[String],
    report: &Path,
) -> Result<Option<Leak>, GateError> {
    if news.is_empty() {
        return Ok(None);
    }
    let log_opts = format!("{} --not --all", news.join(" "));
    let _ = std::fs::remove_file(report);
    let out = Command::new(program)
        .args(["git", "--no-banner", "--redact", "--exit-code", "1"])
        .args(["--report-format", "json", "--report-path"])
        .arg(report)
        .arg(format!("--log-opts={log_opts}"))
        .arg(repo)
        .env_remove("GITLEAKS_CONFIG")
        .env_remove("GITLEAKS_CONFIG_TOML")
        .current_dir(repo)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| GateError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
    let failed = |why: String| GateError::Git {
        what: "gitleaks (the second-opinion scan)".into(),
        stderr: why,
    };
    match out.status.code() {
        Some(0) => Ok(None),
        Some(1) => {
            let text = std::fs::read_to_string(report).map_err(|e| {
                failed(format!(
                    "it reported leaks but its report is unreadable: {e}"
                ))
            })?;
            let leaks: Vec<Leak> = serde_json::from_str(&text)
                .map_err(|e| failed(format!("its report is not the expected JSON: {e}")))?;
            let _ = std::fs::remove_file(report);
            match leaks.into_iter().next() {
                Some(l) => Ok(Some(l)),
                None => Err(failed("it exited 1 with an empty report".into())),
            }
        }
        _ => Err(failed(super::upstream::last_line(&out.stderr))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        assert_eq!("auto".parse::<GitleaksOpt>().unwrap(), GitleaksOpt::Auto);
        assert_eq!("off".parse::<GitleaksOpt>().unwrap(), GitleaksOpt::Off);
        assert_eq!(
            "/x/gitleaks".parse::<GitleaksOpt>().unwrap(),
            GitleaksOpt::Program("/x/gitleaks".into())
        );
        assert!("".parse::<GitleaksOpt>().is_err());
    }

    #[test]
    fn auto_without_gitleaks_on_path_is_absent_and_a_named_missing_program_is_an_error() {
        let empty = tempfile::tempdir().unwrap();
        let path = empty.path().as_os_str();
        assert!(resolve(&GitleaksOpt::Auto, Some(path)).unwrap().is_none());
        assert!(resolve(&GitleaksOpt::Off, Some(path)).unwrap().is_none());
        let missing = GitleaksOpt::Program(empty.path().join("gitleaks"));
        assert!(resolve(&missing, Some(path)).is_err());
    }

    #[test]
    fn a_leak_names_rule_commit_and_file() {
        let leaks: Vec<Leak> = serde_json::from_str(
            r#"[{"RuleID":"aws-access-token","Commit":"abc","File":"a.txt","Secret":"REDACTED","Match":"REDACTED"}]"#,
        )
        .unwrap();
        assert_eq!(
            leaks[0].to_string(),
            "gitleaks rule aws-access-token in commit abc, a.txt"
        );
    }
}
