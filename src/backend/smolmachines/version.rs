//! Which smolvm is installed, and the allowlist workaround its version needs.
//!
//! smolvm 0.8 accepts `machine create --from <artifact> --allow-cidr X/32` and then stores
//! no allowlist at all: the booted VM reaches every loopback address. The fix is to write
//! the allowlist into smolvm's machine database between `machine create` and
//! `machine start` (smolvm reads it at start). Versions from 0.9 on are trusted to honour the
//! flag; an unreadable version string gets the workaround too, because a VM without its
//! allowlist is the failure that matters.

use std::path::{Path, PathBuf};

use crate::runner::ProcessSpec;

/// A parsed `smolvm --version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SmolvmVersion {
    pub(crate) major: u32,
    pub(crate) minor: u32,
    pub(crate) patch: u32,
}

impl std::fmt::Display for SmolvmVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The first version trusted to keep `--allow-cidr` together with `--from`.
pub(crate) const FIXED_IN: SmolvmVersion = SmolvmVersion {
    major: 0,
    minor: 9,
    patch: 0,
};

/// The first `N.N[.N]` in the output (`smolvm 0.8.0`, `smolvm version v0.8.0 (abc)`).
pub(crate) fn parse(output: &str) -> Option<SmolvmVersion> {
    output
        .split(|c: char| c.is_whitespace() || c == '(' || c == ',')
        .map(|w| w.trim_start_matches('v'))
        .find_map(|w| {
            let core = w.split(['-', '+']).next()?;
            let mut parts = core.split('.');
            let major = parts.next()?.parse().ok()?;
            let minor = parts.next()?.parse().ok()?;
            let patch = match parts.next() {
                Some(p) => p.parse().ok()?,
                None => 0,
            };
            if parts.next().is_some() {
                return None;
            }
            Some(SmolvmVersion {
                major,
                minor,
                patch,
            })
        })
}

/// Whether the allowlist must be written into smolvm's database after `machine create`.
pub(crate) fn needs_allowlist_patch(version: Option<SmolvmVersion>) -> bool {
    version.is_none_or(|v| v < FIXED_IN)
}

/// Where smolvm keeps its machine database: under the platform's application-data dir
/// (`~/Library/Application Support` on macOS, `$XDG_DATA_HOME` or `~/.local/share`
/// elsewhere).
pub(crate) fn database_path(macos: bool, home: &Path, xdg_data_home: Option<&Path>) -> PathBuf {
    let data = if macos {
        home.join("Library").join("Application Support")
    } else {
        match xdg_data_home.filter(|p| p.is_absolute()) {
            Some(x) => x.to_path_buf(),
            None => home.join(".local").join("share"),
        }
    };
    data.join("smolvm").join("server").join("smolvm.db")
}

fn sql_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `sqlite3 <db> <sql>`: set the machine's `allowed_cidrs` and print how many rows changed,
/// so the caller can tell a patched machine from a missing row. The row's JSON stays a BLOB
/// (smolvm cannot read it back as TEXT).
pub(crate) fn patch_spec(db: &Path, machine: &str, cidrs: &[String]) -> ProcessSpec {
    let list = serde_json::to_string(cidrs).unwrap_or_else(|_| "[]".to_string());
    let sql = format!(
        "UPDATE vms SET data = CAST(json_set(CAST(data AS TEXT), '$.allowed_cidrs', json({list})) AS BLOB) \
         WHERE name = {name}; SELECT changes();",
        list = sql_quote(&list),
        name = sql_quote(machine),
    );
    ProcessSpec::new("sqlite3")
        .arg(db.display().to_string())
        .arg(sql)
}

/// Whether `patch_spec`'s output says exactly one row was changed.
pub(crate) fn patched_one_row(stdout: &str) -> bool {
    stdout.trim().lines().last().map(str::trim) == Some("1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u32, minor: u32, patch: u32) -> SmolvmVersion {
        SmolvmVersion {
            major,
            minor,
            patch,
        }
    }

    #[test]
    fn version_strings_parse() {
        assert_eq!(parse("smolvm 0.8.0\n"), Some(v(0, 8, 0)));
        assert_eq!(parse("smolvm version v1.29.0 (abc123)"), Some(v(1, 29, 0)));
        assert_eq!(parse("smolvm 0.9"), Some(v(0, 9, 0)));
        assert_eq!(parse("smolvm 0.8.1-rc1"), Some(v(0, 8, 1)));
        assert_eq!(parse("smolvm dev build"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn the_workaround_applies_to_the_version_that_drops_the_flag() {
        assert!(needs_allowlist_patch(parse("smolvm 0.8.0")));
        assert!(needs_allowlist_patch(parse("smolvm 0.7.3")));
        assert!(!needs_allowlist_patch(parse("smolvm 0.9.0")));
        assert!(!needs_allowlist_patch(parse("smolvm 1.2.4")));
        // Unknown version: patch, because an unenforced allowlist is the worse failure.
        assert!(needs_allowlist_patch(parse("smolvm nightly")));
    }

    #[test]
    fn database_path_follows_the_platform() {
        let home = Path::new("/Users/op");
        assert_eq!(
            database_path(true, home, None),
            Path::new("/Users/op/Library/Application Support/smolvm/server/smolvm.db")
        );
        assert_eq!(
            database_path(false, Path::new("/home/op"), None),
            Path::new("/home/op/.local/share/smolvm/server/smolvm.db")
        );
        assert_eq!(
            database_path(false, Path::new("/home/op"), Some(Path::new("/data"))),
            Path::new("/data/smolvm/server/smolvm.db")
        );
    }

    /// Runs the patch against a real SQLite database shaped like smolvm's.
    #[test]
    fn the_patch_sets_the_allowlist_in_a_real_database() {
        use crate::runner::{RealRunner, Runner as _};
        if RealRunner
            .run(&ProcessSpec::new("sqlite3").arg("-version"))
            .is_err()
        {
            eprintln!("SKIPPED: `sqlite3` is not installed; the allowlist patch was not run");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("smolvm.db");
        let setup = ProcessSpec::new("sqlite3").arg(db.display().to_string()).arg(
            "CREATE TABLE vms (name TEXT PRIMARY KEY, data BLOB); \
             INSERT INTO vms VALUES ('bot-bottle-a', CAST('{\"network\":true,\"allowed_cidrs\":null}' AS BLOB)); \
             INSERT INTO vms VALUES ('other', CAST('{\"allowed_cidrs\":null}' AS BLOB));",
        );
        RealRunner.run_checked(&setup).unwrap();
        let cidrs = vec!["127.0.0.16/32".to_string()];
        let out = RealRunner
            .run_checked(&patch_spec(&db, "bot-bottle-a", &cidrs))
            .unwrap();
        assert!(patched_one_row(&out.stdout_str()), "{}", out.stdout_str());
        let read = ProcessSpec::new("sqlite3")
            .arg(db.display().to_string())
            .arg(
                "SELECT name, typeof(data), json_extract(CAST(data AS TEXT), '$.allowed_cidrs'), \
             json_extract(CAST(data AS TEXT), '$.network') FROM vms ORDER BY name;",
            );
        let rows = RealRunner.run_checked(&read).unwrap().stdout_str();
        assert_eq!(
            rows, "bot-bottle-a|blob|[\"127.0.0.16/32\"]|1\nother|blob||\n",
            "only the named machine changes, and its data stays a BLOB"
        );
        // A machine with no row changes nothing, which the caller treats as an error.
        let out = RealRunner
            .run_checked(&patch_spec(&db, "bot-bottle-missing", &cidrs))
            .unwrap();
        assert!(!patched_one_row(&out.stdout_str()));
        // A quote in the name cannot break out of the statement.
        let out = RealRunner
            .run_checked(&patch_spec(&db, "x'; DROP TABLE vms; --", &cidrs))
            .unwrap();
        assert!(!patched_one_row(&out.stdout_str()));
        let count = ProcessSpec::new("sqlite3")
            .arg(db.display().to_string())
            .arg("SELECT count(*) FROM vms;");
        assert_eq!(RealRunner.run_checked(&count).unwrap().stdout_str(), "2\n");
    }
}
