//! The agent's config (TOML): the nodes, the token, and the files it renders.

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;

use serde::Deserialize;

use super::template::placeholders;
use crate::model::names;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One secret's bytes as they are.
    Raw,
    /// `KEY=value` lines (keys from `env_names`, else the name's last segment in capitals).
    Env,
    /// `{"name": "value", ...}`.
    Json,
    /// `template` with each `{{ name }}` replaced by that secret's value.
    Template,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub addr: String,
    pub region: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub path: PathBuf,
    pub format: Format,
    /// The secrets it holds (for `template`, those its placeholders name).
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Which alias of each secret (default CURRENT; PREVIOUS for a rotation's overlap).
    #[serde(default = "current")]
    pub alias: String,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub env_names: BTreeMap<String, String>,
    /// Octal permissions: 0400 (default) or 0600, or others without group or other bits.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// `uid:gid` (numbers) the file is given; default the agent's own.
    #[serde(default)]
    pub owner: Option<String>,
    /// Without it, the agent does not start (and `--once` fails).
    #[serde(default = "yes")]
    pub critical: bool,
    /// Run after the file changed (argv, no shell).
    #[serde(default)]
    pub reload_command: Vec<String>,
    /// Or signal the process whose pid this file holds, after the file changed.
    #[serde(default)]
    pub signal_pid_file: Option<PathBuf>,
    /// The signal: HUP (default), USR1, USR2, TERM.
    #[serde(default)]
    pub signal: Option<String>,
}

fn current() -> String {
    "CURRENT".into()
}
fn default_mode() -> String {
    "0400".into()
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub region: String,
    pub endpoints: Vec<EndpointConfig>,
    /// A file holding the token (else `COFFER_TOKEN`).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The CA of https endpoints.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How often the files are checked against the cache (the watch keeps it fresh).
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    #[serde(default = "default_ttl")]
    pub ttl_secs: u64,
    /// How long files are kept through an outage; past it they are removed.
    #[serde(default = "default_max_stale")]
    pub max_stale_secs: u64,
    /// Where the agent writes its status (JSON) after every pass that changed it.
    #[serde(default)]
    pub status_file: Option<PathBuf>,
    /// Serve Prometheus metrics at `http://<metrics_addr>/metrics` (off when unset).
    #[serde(default)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    #[serde(rename = "file")]
    pub files: Vec<FileConfig>,
}

fn default_interval() -> u64 {
    1000
}
fn default_ttl() -> u64 {
    300
}
fn default_max_stale() -> u64 {
    3600
}

/// The permissions `mode` stands for, refusing any that lets group or others in.
pub fn mode_bits(mode: &str) -> Result<u32, String> {
    let bits =
        u32::from_str_radix(mode.trim_start_matches("0o"), 8).map_err(|_| format!("mode {mode:?} is not octal"))?;
    if bits & 0o077 != 0 || bits & 0o400 == 0 || bits > 0o777 {
        return Err(format!(
            "mode {mode} must let the owner read and nobody else in (0400 or 0600)"
        ));
    }
    Ok(bits)
}

/// `uid:gid` as numbers.
pub fn owner_ids(owner: &str) -> Result<(u32, u32), String> {
    let (u, g) = owner
        .split_once(':')
        .ok_or_else(|| format!("owner {owner:?} must be uid:gid (numbers)"))?;
    Ok((
        u.parse()
            .map_err(|_| format!("owner {owner:?}: the uid is not a number"))?,
        g.parse()
            .map_err(|_| format!("owner {owner:?}: the gid is not a number"))?,
    ))
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut cfg: AgentConfig = toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
        cfg.check()?;
        for f in &mut cfg.files {
            if f.format == Format::Template && f.secrets.is_empty() {
                f.secrets = placeholders(f.template.as_deref().unwrap_or(""));
            }
        }
        Ok(cfg)
    }

    /// Every mistake a config can hold, named with the file it is about.
    pub fn check(&self) -> Result<(), String> {
        if self.endpoints.is_empty() {
            return Err("endpoints: list every node's API (addr and region)".into());
        }
        if self.files.is_empty() {
            return Err("no [[file]]: nothing to render".into());
        }
        if !(100..=3_600_000).contains(&self.interval_ms) {
            return Err(format!("interval_ms {} must be 100 to 3600000", self.interval_ms));
        }
        let mut paths = std::collections::BTreeSet::new();
        for f in &self.files {
            let at = |m: String| format!("file {}: {m}", f.path.display());
            if !f.path.is_absolute() || f.path.file_name().is_none() {
                return Err(at("the path must be absolute and name a file".into()));
            }
            if !paths.insert(&f.path) {
                return Err(at("listed twice".into()));
            }
            mode_bits(&f.mode).map_err(at)?;
            let from_template = f.template.as_deref().map(placeholders).unwrap_or_default();
            for name in f.secrets.iter().chain(&from_template) {
                names::validate_name(name).map_err(|e| at(format!("secret {name:?}: {e}")))?;
            }
            names::normalize_alias(&f.alias).map_err(|e| at(format!("alias {:?}: {e}", f.alias)))?;
            if let Some(o) = &f.owner {
                owner_ids(o).map_err(at)?;
            }
            match f.format {
                Format::Raw if f.secrets.len() != 1 => return Err(at("a raw file holds exactly one secret".into())),
                Format::Template => {
                    let t = f
                        .template
                        .as_deref()
                        .ok_or_else(|| at("format template needs template".into()))?;
                    if from_template.is_empty() {
                        return Err(at(format!("the template {t:?} has no {{{{ name }}}} placeholder")));
                    }
                    if let Some(p) = from_template
                        .iter()
                        .find(|p| !f.secrets.is_empty() && !f.secrets.contains(p))
                    {
                        return Err(at(format!("the template names {p}, which secrets does not list")));
                    }
                }
                Format::Env | Format::Json if f.secrets.is_empty() => return Err(at("no secrets listed".into())),
                _ => {}
            }
            if f.format != Format::Template && f.template.is_some() {
                return Err(at("template is only for format = \"template\"".into()));
            }
            if !f.reload_command.is_empty() && f.signal_pid_file.is_some() {
                return Err(at("reload_command or signal_pid_file, not both".into()));
            }
            if let Some(s) = &f.signal {
                signal_number(s).map_err(at)?;
            }
        }
        Ok(())
    }
}

/// The number of a signal the agent may send.
pub fn signal_number(name: &str) -> Result<i32, String> {
    match name.trim_start_matches("SIG") {
        "HUP" => Ok(libc::SIGHUP),
        "USR1" => Ok(libc::SIGUSR1),
        "USR2" => Ok(libc::SIGUSR2),
        "TERM" => Ok(libc::SIGTERM),
        other => Err(format!("signal {other:?} is not one of HUP, USR1, USR2, TERM")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(files: &str) -> Result<AgentConfig, String> {
        let text =
            format!("region = \"eu\"\nendpoints = [{{ addr = \"http://127.0.0.1:1\", region = \"eu\" }}]\n{files}");
        let cfg: AgentConfig = toml::from_str(&text).map_err(|e| e.message().to_string())?;
        cfg.check().map(|_| cfg)
    }

    #[test]
    fn a_config_is_checked_file_by_file_with_the_mistake_named() {
        let ok = parse("[[file]]\npath = \"/run/a\"\nformat = \"raw\"\nsecrets = [\"acme/a\"]\n").unwrap();
        assert_eq!((ok.files[0].mode.as_str(), ok.files[0].critical), ("0400", true));
        for (files, says) in [
            ("[[file]]\npath = \"run/a\"\nformat = \"raw\"\nsecrets = [\"acme/a\"]\n", "absolute"),
            ("[[file]]\npath = \"/run/a\"\nformat = \"raw\"\nsecrets = [\"acme/a\", \"acme/b\"]\n", "exactly one"),
            ("[[file]]\npath = \"/run/a\"\nformat = \"raw\"\nsecrets = [\"acme/a\"]\nmode = \"0644\"\n", "nobody else"),
            ("[[file]]\npath = \"/run/a\"\nformat = \"raw\"\nsecrets = [\"acme/a\"]\nowner = \"root\"\n", "uid:gid"),
            ("[[file]]\npath = \"/run/a\"\nformat = \"template\"\ntemplate = \"x\"\n", "placeholder"),
            ("[[file]]\npath = \"/run/a\"\nformat = \"template\"\ntemplate = \"{{ acme/b }}\"\nsecrets = [\"acme/a\"]\n", "acme/b"),
            ("[[file]]\npath = \"/run/a\"\nformat = \"raw\"\nsecrets = [\"acme/a\"]\nsignal = \"KILL\"\n", "HUP"),
            ("[[file]]\npath = \"/run/a\"\nformat = \"yaml\"\nsecrets = [\"acme/a\"]\n", "variant"),
            ("[[file]]\npath = \"/run/a\"\nformat = \"raw\"\nsecrets = [\"acme//a\"]\n", "acme//a"),
            ("[[file]]\npath = \"/run/a\"\nformat = \"raw\"\nsecrets = [\"acme/a\"]\nalias = \"bad alias\"\n", "alias"),
            ("[[file]]\npath = \"/run/a\"\nformat = \"template\"\ntemplate = \"{{ /x }}\"\n", "/x"),
        ] {
            let e = parse(files).unwrap_err();
            assert!(e.contains(says), "{files}: {e}");
        }
    }
}
