//! The bottle's `env`, split by how each value may travel: literals may be written to a
//! mode-0600 env file; forwarded values (interpolated from the host, or answered at a prompt)
//! reach the container only through a child process's environment.

use std::collections::BTreeMap;

use super::creds::Creds;
use super::{HostEnv, PlanError};
use crate::manifest::EnvValue;
use crate::secret::Secret;

/// `Debug` shows names only: a literal may still be something the operator would not want in
/// a log.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct EnvPlan {
    pub(crate) literal: BTreeMap<String, String>,
    pub(crate) forwarded: BTreeMap<String, Secret>,
    /// Still to be asked at launch: name → message shown to the operator.
    pub(crate) prompted: BTreeMap<String, String>,
}

impl std::fmt::Debug for EnvPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvPlan")
            .field("literal", &self.literal.keys().collect::<Vec<_>>())
            .field("forwarded", &self.forwarded.keys().collect::<Vec<_>>())
            .field("prompted", &self.prompted.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl EnvPlan {
    /// Every name the agent will see from the bottle, sorted.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        let mut all: Vec<&str> = self
            .literal
            .keys()
            .chain(self.forwarded.keys())
            .chain(self.prompted.keys())
            .map(String::as_str)
            .collect();
        all.sort_unstable();
        all.dedup();
        all.into_iter()
    }
}

#[cfg(test)]
pub(crate) fn resolve_env(
    env: &BTreeMap<String, EnvValue>,
    host: &HostEnv,
) -> Result<EnvPlan, PlanError> {
    resolve_env_with(env, host, &mut Creds::strict())
}

/// [`resolve_env`], recording each `${VAR}` host value an entry takes in `creds`.
pub(crate) fn resolve_env_with(
    env: &BTreeMap<String, EnvValue>,
    host: &HostEnv,
    creds: &mut Creds,
) -> Result<EnvPlan, PlanError> {
    let mut plan = EnvPlan::default();
    for (name, value) in env {
        match value {
            EnvValue::Literal(v) => {
                plan.literal.insert(name.clone(), v.clone());
            }
            EnvValue::Prompt(message) => {
                plan.prompted.insert(name.clone(), message.clone());
            }
            EnvValue::Interpolate(template) => {
                let used_by = format!("env.{name}");
                for var in crate::manifest::template::references(template) {
                    creds.note(&used_by, var, host.vars.contains_key(var));
                }
                let v = if creds.record_unset {
                    crate::manifest::template::interpolate(template, |var| {
                        Some(host.vars.get(var).cloned().unwrap_or_default())
                    })
                    .unwrap_or_default()
                } else {
                    interpolate(name, template, host)?
                };
                plan.forwarded.insert(name.clone(), Secret::new(v));
            }
        }
    }
    Ok(plan)
}

/// Replace every `${VAR}` in `template` with the host value (the manifest's template
/// syntax, already checked at load). An unset variable is an error naming it; an empty one
/// is used as is.
pub(crate) fn interpolate(name: &str, template: &str, host: &HostEnv) -> Result<String, PlanError> {
    crate::manifest::template::interpolate(template, |var| host.vars.get(var).cloned()).map_err(
        |e| match e {
            crate::manifest::template::TemplateError::Unset(var) => PlanError::MissingHostVar {
                name: name.to_string(),
                var,
            },
            crate::manifest::template::TemplateError::Malformed(_) => PlanError::BadInterpolation {
                name: name.to_string(),
            },
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(vars: &[(&str, &str)]) -> HostEnv {
        crate::plan::testutil::host_with(vars)
    }

    #[test]
    fn splits_literal_forwarded_and_prompted() {
        let env = BTreeMap::from([
            ("LIT".to_string(), EnvValue::Literal("plain".into())),
            ("ASK".to_string(), EnvValue::Prompt("Your PIN".into())),
            ("FWD".to_string(), EnvValue::Interpolate("${GH}".into())),
        ]);
        let p = resolve_env(&env, &host(&[("GH", "ghp_value")])).unwrap();
        assert_eq!(p.literal.get("LIT").map(String::as_str), Some("plain"));
        assert_eq!(p.prompted.get("ASK").map(String::as_str), Some("Your PIN"));
        assert_eq!(
            p.forwarded.get("FWD").map(Secret::expose),
            Some("ghp_value")
        );
        assert_eq!(p.names().collect::<Vec<_>>(), ["ASK", "FWD", "LIT"]);
    }

    #[test]
    fn debug_shows_names_only() {
        let env = BTreeMap::from([
            ("LIT".to_string(), EnvValue::Literal("lit-VALUE".into())),
            ("FWD".to_string(), EnvValue::Interpolate("${GH}".into())),
        ]);
        let p = resolve_env(&env, &host(&[("GH", "fwd-VALUE")])).unwrap();
        let d = format!("{p:?}");
        assert!(d.contains("LIT") && d.contains("FWD"), "{d}");
        assert!(!d.contains("VALUE"), "{d}");
    }

    #[test]
    fn interpolates_several_references_and_keeps_other_text() {
        let h = host(&[("USER", "ann"), ("TOK", "t0k")]);
        assert_eq!(
            interpolate("X", "u=${USER}:${TOK}/$PATH", &h).unwrap(),
            "u=ann:t0k/$PATH"
        );
        assert_eq!(interpolate("X", "no refs", &h).unwrap(), "no refs");
    }

    #[test]
    fn empty_host_value_is_used() {
        assert_eq!(
            interpolate("X", "a${E}b", &host(&[("E", "")])).unwrap(),
            "ab"
        );
    }

    #[test]
    fn missing_host_var_is_an_error_naming_it() {
        let err = interpolate("API", "${NOPE_VAR}", &host(&[])).unwrap_err();
        assert!(
            matches!(&err, PlanError::MissingHostVar { var, name } if var == "NOPE_VAR" && name == "API")
        );
        let msg = err.to_string();
        assert!(msg.contains("NOPE_VAR") && msg.contains("API"), "{msg}");
    }

    #[test]
    fn malformed_references_are_errors() {
        for t in ["${UNCLOSED", "${}", "${1X}", "${A-B}"] {
            assert!(
                matches!(
                    interpolate("N", t, &host(&[])),
                    Err(PlanError::BadInterpolation { .. })
                ),
                "{t}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn interpolate_never_panics(t in ".{0,64}") {
            let h = host(&[("A", "1")]);
            let _ = interpolate("N", &t, &h);
        }
    }
}
