//! The preflight summary (`Display` for [`BottlePlan`]): one screen the operator reads before
//! confirming. It names things (env names, hosts, paths) and never shows a value that could be
//! a secret: env values, token values and prompt answers are never printed, and provider
//! placeholder variables are left out so they are not mistaken for credentials.

use std::fmt;

use super::{BottlePlan, ImageSource};

const WIDTH: usize = 10;

fn line(f: &mut fmt::Formatter<'_>, key: &str, value: impl fmt::Display) -> fmt::Result {
    writeln!(f, "  {key:<WIDTH$} {value}")
}

fn list(f: &mut fmt::Formatter<'_>, key: &str, items: &[String]) -> fmt::Result {
    if items.is_empty() {
        return line(f, key, "-");
    }
    let mut first = true;
    for item in items {
        if first {
            line(f, key, item)?;
            first = false;
        } else {
            line(f, "", item)?;
        }
    }
    Ok(())
}

impl fmt::Display for BottlePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        line(f, "identity", &self.identity)?;
        line(f, "agent", &self.agent)?;
        line(f, "bottle", &self.bottle)?;
        line(f, "provider", self.provider.kind.as_str())?;
        line(f, "backend", self.backend.as_str())?;
        let image_note = match &self.image.source {
            ImageSource::Provider(_) => String::new(),
            ImageSource::Dockerfile(p) => format!(" (from {})", p.display()),
            ImageSource::Rebuilt(_) => " (approved Dockerfile)".to_string(),
            ImageSource::Override => " (BOT_BOTTLE_IMAGE)".to_string(),
        };
        line(f, "image", format_args!("{}{image_note}", self.image.tag))?;
        let pinned = if self.names.container_pinned {
            " (BOT_BOTTLE_CONTAINER)"
        } else {
            ""
        };
        line(
            f,
            "container",
            format_args!("{}{pinned}", self.names.agent_container),
        )?;
        line(f, "runtime", self.runtime.label())?;
        if self.copy_cwd {
            line(
                f,
                "workspace",
                format_args!("{} (copied in)", self.cwd.display()),
            )?;
        }
        let env: Vec<&str> = self.visible_env_names();
        let env_text = if env.is_empty() {
            "-".to_string()
        } else {
            env.iter()
                .map(|n| {
                    if self.env.prompted.contains_key(*n) {
                        format!("{n} (prompt)")
                    } else {
                        (*n).to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        line(f, "env", env_text)?;
        let skills: Vec<&str> = self.skills.iter().map(|s| s.name.as_str()).collect();
        line(
            f,
            "skills",
            if skills.is_empty() {
                "-".to_string()
            } else {
                skills.join(", ")
            },
        )?;
        if !self.git_user.is_empty() {
            line(f, "git user", &self.git_user)?;
        }
        let upstreams: Vec<String> = self
            .git_upstreams
            .iter()
            .map(|u| {
                let pin = if u.host_key.is_some() {
                    "host key pinned"
                } else {
                    "host key NOT pinned (first key seen is trusted)"
                };
                format!(
                    "{} → {}:{} ({pin}; push: {})",
                    u.name, u.host, u.port, u.refs
                )
            })
            .collect();
        if !upstreams.is_empty() {
            list(f, "git-gate", &upstreams)?;
        }
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|r| {
                let mut s = r.host.clone();
                if !r.path_allowlist.is_empty() {
                    s.push(' ');
                    s.push_str(&r.path_allowlist.join(" "));
                }
                if let Some(a) = &r.auth {
                    s.push_str(&format!(" [auth:{}]", a.scheme.as_str()));
                }
                s
            })
            .collect();
        list(f, "egress", &routes)?;
        line(f, "supervise", if self.supervise { "on" } else { "off" })?;
        if self.remote_control {
            line(f, "remote", "on (--remote-control)")?;
        }
        if self.resume {
            line(f, "resume", "continuing the last session")?;
        }
        writeln!(f)
    }
}
