//! Skills are copied from the operator's own `~/.claude/skills/<name>`; each named one must be
//! a directory there, checked before anything starts.

use std::path::PathBuf;

use super::{HostEnv, PlanError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Skill {
    pub name: String,
    /// `<home>/.claude/skills/<name>` on the host.
    pub(crate) host_path: PathBuf,
}

pub(crate) fn resolve_skills(names: &[String], host: &HostEnv) -> Result<Vec<Skill>, PlanError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let base = host.home()?.join(".claude").join("skills");
    names
        .iter()
        .map(|name| {
            // The name becomes a path component on the host and in the guest.
            let plain = !name.is_empty()
                && name != "."
                && name != ".."
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !plain {
                return Err(PlanError::BadSkillName(name.clone()));
            }
            let host_path = base.join(name);
            if !host_path.is_dir() {
                return Err(PlanError::SkillMissing {
                    name: name.clone(),
                    path: host_path,
                });
            }
            Ok(Skill {
                name: name.clone(),
                host_path,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testutil::host;

    #[test]
    fn existing_skill_dirs_resolve_and_others_fail() {
        let dir = tempfile::tempdir().unwrap();
        let skills = dir.path().join(".claude/skills");
        std::fs::create_dir_all(skills.join("review")).unwrap();
        std::fs::write(skills.join("afile"), "x").unwrap();
        let mut h = host();
        h.home = Some(dir.path().to_path_buf());
        let ok = resolve_skills(&["review".into()], &h).unwrap();
        assert_eq!(ok[0].host_path, skills.join("review"));
        for missing in ["nope", "afile"] {
            let err = resolve_skills(&[missing.into()], &h).unwrap_err();
            assert!(matches!(&err, PlanError::SkillMissing { name, .. } if name == missing));
            assert!(err.to_string().contains(missing));
        }
    }

    #[test]
    fn skill_names_cannot_leave_the_skills_dir() {
        for bad in ["..", "../x", "a/b", ""] {
            assert!(
                matches!(
                    resolve_skills(&[bad.into()], &host()),
                    Err(PlanError::BadSkillName(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn skills_need_home_only_when_named() {
        let mut h = host();
        h.home = None;
        assert!(resolve_skills(&[], &h).unwrap().is_empty());
        assert!(matches!(
            resolve_skills(&["x".into()], &h),
            Err(PlanError::NoHome)
        ));
    }
}
