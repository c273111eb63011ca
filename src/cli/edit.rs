//! `edit <agent>`: open the agent's file in the operator's editor, then load everything again
//! so a broken edit is reported at once rather than at the next `start`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::runner::{ProcessSpec, RealRunner, Runner};

use super::context::{home_root, load_manifest, load_manifest_for};
use super::output::say;

pub(crate) fn edit(args: &super::EditArgs) -> anyhow::Result<ExitCode> {
    let path = agent_file(&args.agent)?;
    let editor = std::env::var("VISUAL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| {
            std::env::var("EDITOR")
                .ok()
                .filter(|v| !v.trim().is_empty())
        })
        .unwrap_or_else(|| "vi".to_string());
    let mut words = editor.split_whitespace();
    let program = words.next().unwrap_or("vi");
    let spec = ProcessSpec::new(program)
        .args(words)
        .arg(path.display().to_string());
    let code = RealRunner.run_interactive(&spec).with_context(|| {
        format!("cannot run the editor `{program}`; set `EDITOR` to an installed editor")
    })?;
    if code != 0 {
        anyhow::bail!(
            "the editor `{program}` exited with code {code}; `{}` may be unsaved",
            path.display()
        );
    }
    match load_manifest_for(Some(&args.agent)) {
        Ok(_) => {
            say(&format!("`{}` saved and valid", path.display()));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.context(format!(
            "the edited file no longer loads; fix it with `bot-bottle edit {}`",
            args.agent
        ))),
    }
}

/// The file to open: the one the manifest resolves (cwd wins), or, when the manifest does
/// not load (perhaps because of this very file), the first that exists on disk.
fn agent_file(name: &str) -> anyhow::Result<PathBuf> {
    if !crate::manifest::is_valid_entity_name(name) {
        anyhow::bail!("`{name}` is not a valid agent name; names match `[a-z][a-z0-9-]*`");
    }
    if let Ok(manifest) = load_manifest() {
        if let Some(agent) = manifest.agents.get(name) {
            return Ok(agent.path.clone());
        }
    }
    let file = format!("{name}.md");
    let mut candidates = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        candidates.push(cwd.join(".bot-bottle").join("agents").join(&file));
    }
    candidates.push(home_root()?.join("agents").join(&file));
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        anyhow::anyhow!("no agent named `{name}`; create it with `bot-bottle init {name}`")
    })
}
