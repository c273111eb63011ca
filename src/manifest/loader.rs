//! Finds and reads manifest files: the home root and the project's `.bot-bottle/`.
//!
//! The trust boundary is the layout: bottles (credentials, egress, git remotes) come only
//! from `<root>/bottles/`; a project's `.bot-bottle/` may add or replace agents, and its
//! `bottles/` folder is ignored with a warning.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::error::ManifestError;
use super::frontmatter;
use super::types::{Agent, AgentSource, BrokenAgent, Manifest};
use super::validate::{self, RawBottle};
use super::{extends, is_valid_entity_name};

/// Largest manifest file accepted (bytes).
pub(crate) const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Where to load from: the home root and the directory `bot-bottle` runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    pub root: PathBuf,
    pub cwd: PathBuf,
}

/// `$BOT_BOTTLE_HOME` when set and non-empty, else `<home>/.bot-bottle`.
pub(crate) fn home_root(
    bot_bottle_home: Option<&OsStr>,
    home: Option<&Path>,
) -> Result<PathBuf, ManifestError> {
    match (bot_bottle_home, home) {
        (Some(h), _) if !h.is_empty() => Ok(PathBuf::from(h)),
        (_, Some(home)) if !home.as_os_str().is_empty() => Ok(home.join(".bot-bottle")),
        _ => Err(ManifestError::NoHome),
    }
}

/// Loads, validates and resolves every bottle and agent.
pub fn load(opts: &LoadOptions) -> Result<Manifest, ManifestError> {
    let root = &opts.root;
    let project_dir = opts.cwd.join(".bot-bottle");
    let legacy = opts.cwd.join("bot-bottle.json");
    if legacy.is_file() && !project_dir.exists() {
        return Err(ManifestError::LegacyJson {
            legacy,
            dir: project_dir,
            root: root.clone(),
        });
    }
    if !root.is_dir() {
        return Err(ManifestError::NoHomeRoot { path: root.clone() });
    }
    let mut warnings = Vec::new();

    let mut raws: BTreeMap<String, RawBottle> = BTreeMap::new();
    for (name, path) in list_md(&root.join("bottles"), &mut warnings)? {
        let text = read_capped(&path)?;
        raws.insert(name, parse_bottle_file(&path, &text)?);
    }
    let bottles = extends::resolve(&raws)?;

    let mut agents: BTreeMap<String, Agent> = BTreeMap::new();
    let mut broken: BTreeMap<String, BrokenAgent> = BTreeMap::new();
    load_agents(
        &root.join("agents"),
        AgentSource::Home,
        &mut agents,
        &mut broken,
        &mut warnings,
    )?;

    // When the cwd's `.bot-bottle` is the home root itself, it was loaded above.
    let same = match (project_dir.canonicalize(), root.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if project_dir.is_dir() && !same {
        let ignored = project_dir.join("bottles");
        if ignored.exists() {
            warnings.push(format!(
                "ignoring {}: bottles are read only from {} (a project may ship agents, never bottles)",
                shown(&ignored),
                shown(&root.join("bottles"))
            ));
        }
        load_agents(
            &project_dir.join("agents"),
            AgentSource::Cwd,
            &mut agents,
            &mut broken,
            &mut warnings,
        )?;
    }

    // An agent naming a missing bottle is broken on its own; the others still load.
    let missing: Vec<String> = agents
        .values()
        .filter(|a| !bottles.contains_key(&a.bottle))
        .map(|a| a.name.clone())
        .collect();
    for name in missing {
        let Some(agent) = agents.remove(&name) else {
            continue;
        };
        let available: Vec<&str> = bottles.keys().map(String::as_str).collect();
        let available = if available.is_empty() {
            "none".to_owned()
        } else {
            available.join(", ")
        };
        let error = ManifestError::invalid(
            &agent.path,
            "bottle",
            format!(
                "no bottle named `{}` in {}; available: {available}",
                agent.bottle,
                shown(&root.join("bottles"))
            ),
        );
        broken.insert(
            name.clone(),
            BrokenAgent {
                name,
                path: agent.path,
                source: agent.source,
                error: error.to_string(),
            },
        );
    }
    for w in &warnings {
        tracing::debug!(warning = %w, "manifest");
    }
    Ok(Manifest {
        root: root.clone(),
        bottles,
        agents,
        broken,
        warnings,
    })
}

/// Loads one agents folder. A file that does not parse or validate is recorded as broken
/// (replacing any agent of that name loaded earlier, as a valid file would), so one bad
/// file never stops the other agents from loading.
fn load_agents(
    dir: &Path,
    source: AgentSource,
    agents: &mut BTreeMap<String, Agent>,
    broken: &mut BTreeMap<String, BrokenAgent>,
    warnings: &mut Vec<String>,
) -> Result<(), ManifestError> {
    for (name, path) in list_md(dir, warnings)? {
        let parsed = read_capped(&path).and_then(|text| parse_agent_file(&path, &text));
        match parsed {
            Ok(mut agent) => {
                agent.source = source;
                broken.remove(&name);
                agents.insert(name, agent);
            }
            Err(e) => {
                agents.remove(&name);
                broken.insert(
                    name.clone(),
                    BrokenAgent {
                        name,
                        path,
                        source,
                        error: e.to_string(),
                    },
                );
            }
        }
    }
    Ok(())
}

/// The `<name>.md` files of `dir`, sorted; a missing dir has none.
fn list_md(
    dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, PathBuf)>, ManifestError> {
    if !dir.is_dir() {
        if dir.exists() {
            warnings.push(format!("ignoring {}: not a directory", shown(dir)));
        }
        return Ok(Vec::new());
    }
    let rd = std::fs::read_dir(dir).map_err(|source| ManifestError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| ManifestError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let file_name = entry.file_name();
        let Some(fname) = file_name.to_str() else {
            warnings.push(format!("skipping {}: file name is not UTF-8", shown(&path)));
            continue;
        };
        // Hidden files (editor swap/lock files) and non-Markdown files are not manifests.
        if fname.starts_with('.') {
            continue;
        }
        let Some(stem) = fname.strip_suffix(".md") else {
            continue;
        };
        if !is_valid_entity_name(stem) {
            warnings.push(format!(
                "skipping {}: file names must match [a-z][a-z0-9-]*.md",
                shown(&path)
            ));
            continue;
        }
        // Follows symlinks; refuses FIFOs and devices, which could block a read forever.
        if !path.metadata().is_ok_and(|m| m.is_file()) {
            warnings.push(format!("skipping {}: not a regular file", shown(&path)));
            continue;
        }
        out.push((stem.to_owned(), path));
    }
    out.sort();
    Ok(out)
}

/// Reads a file as UTF-8, refusing anything over [`MAX_FILE_BYTES`].
pub(crate) fn read_capped(path: &Path) -> Result<String, ManifestError> {
    let read_err = |source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    let too_large = |size| ManifestError::TooLarge {
        path: path.to_path_buf(),
        size,
        limit: MAX_FILE_BYTES,
    };
    if len > MAX_FILE_BYTES {
        return Err(too_large(len));
    }
    let mut buf = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(read_err)?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(buf.len() as u64));
    }
    String::from_utf8(buf).map_err(|_| {
        ManifestError::invalid(path, "", "not valid UTF-8 text; save the file as UTF-8")
    })
}

/// A path for a warning or message, on one line.
fn shown(p: &Path) -> String {
    crate::yaml::one_line(&p.display().to_string())
}

fn entity_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Splits and parses a file's frontmatter; YAML errors are reported in file lines.
fn parse_file(path: &Path, text: &str) -> Result<(Value, String), ManifestError> {
    let split =
        frontmatter::split(text).map_err(|e| ManifestError::invalid(path, "", e.to_string()))?;
    let value = crate::yaml::parse_value(&split.yaml).map_err(|e| {
        if e.line == 0 {
            ManifestError::invalid(path, "", e.kind.to_string())
        } else {
            ManifestError::Yaml {
                path: path.to_path_buf(),
                line: e.line + split.first_line - 1,
                column: e.column,
                message: e.kind.to_string(),
            }
        }
    })?;
    Ok((value, split.body))
}

/// Parses and validates one bottle file (its name is the file stem); `extends` is not
/// resolved here.
pub fn parse_bottle_file(path: &Path, text: &str) -> Result<RawBottle, ManifestError> {
    let (value, _body) = parse_file(path, text)?;
    validate::bottle(path, &entity_name(path), &value)
}

/// Parses and validates one agent file (its name is the file stem; source `Home`). Whether
/// its bottle exists is checked by [`load`].
pub fn parse_agent_file(path: &Path, text: &str) -> Result<Agent, ManifestError> {
    let (value, body) = parse_file(path, text)?;
    validate::agent(path, &entity_name(path), AgentSource::Home, &value, &body)
}
