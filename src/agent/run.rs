//! The agent's loop: render every file from the SDK's cache (kept fresh by the watch stream),
//! replace what changed, reload once per change, remove what may no longer be served, and say
//! where each file stands.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use coffer_sdk::Coffer;
use coffer_sdk::SdkError;
use serde_json::json;
use sha2::Digest;
use zeroize::Zeroizing;

use super::config::mode_bits;
use super::config::owner_ids;
use super::config::signal_number;
use super::config::AgentConfig;
use super::config::FileConfig;
use super::files;
use super::render::render;

/// Where one file stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// Written from values the cluster served.
    Fresh,
    /// Kept from values the cache served while no node answered (within max_stale).
    Stale,
    /// Removed: a secret was disabled, destroyed, not readable, or past max_stale.
    Removed(String),
    /// Never written (a non-critical secret not readable yet).
    Missing(String),
}

struct Tracked {
    cfg: FileConfig,
    mode: u32,
    owner: Option<(u32, u32)>,
    digest: Option<[u8; 32]>,
    state: FileState,
    versions: BTreeMap<String, u64>,
}

/// Errors that mean a secret's value must not be on disk any more.
fn gone(e: &SdkError) -> bool {
    matches!(
        e.code(),
        "not_found"
            | "version_disabled"
            | "version_destroyed"
            | "permission_denied"
            | "unauthenticated"
            | "max_stale_exceeded"
    )
}

pub struct Agent {
    sdk: Coffer,
    files: Vec<Tracked>,
    status_file: Option<PathBuf>,
    last_status: String,
}

impl Agent {
    pub fn new(cfg: &AgentConfig, sdk: Coffer) -> Self {
        let files = cfg
            .files
            .iter()
            .map(|f| Tracked {
                mode: mode_bits(&f.mode).unwrap_or(0o400),
                owner: f.owner.as_deref().and_then(|o| owner_ids(o).ok()),
                cfg: f.clone(),
                digest: None,
                state: FileState::Missing("not rendered yet".into()),
                versions: BTreeMap::new(),
            })
            .collect();
        Self {
            sdk,
            files,
            status_file: cfg.status_file.clone(),
            last_status: String::new(),
        }
    }

    /// One pass over every file. At startup (`first`), a critical file that cannot be rendered
    /// is an error naming its secret; later it is removed or kept as its state says.
    pub async fn pass(&mut self, first: bool) -> Result<(), String> {
        for i in 0..self.files.len() {
            let fetched = self.values(&self.files[i].cfg).await;
            let t = &mut self.files[i];
            match fetched {
                Ok((values, versions, stale)) => {
                    let bytes = render(&t.cfg, &values).map_err(|e| format!("file {}: {e}", t.cfg.path.display()))?;
                    let digest: [u8; 32] = sha2::Sha256::digest(&*bytes).into();
                    if t.digest != Some(digest) || !t.cfg.path.exists() {
                        files::replace(&t.cfg.path, &bytes, t.mode, t.owner)
                            .map_err(|e| format!("cannot write {}: {e}", t.cfg.path.display()))?;
                        metrics::counter!("coffer_agent_renders_total").increment(1);
                        let changed = t.digest.is_some();
                        t.digest = Some(digest);
                        if changed {
                            reload(&t.cfg).await;
                        }
                    }
                    t.versions = versions;
                    t.state = if stale { FileState::Stale } else { FileState::Fresh };
                }
                Err((name, e)) if first && t.cfg.critical => {
                    return Err(format!("critical secret {name} cannot be read: {e}"));
                }
                Err((name, e)) if gone(&e) => {
                    if files::remove(&t.cfg.path)
                        .map_err(|err| format!("cannot remove {}: {err}", t.cfg.path.display()))?
                    {
                        tracing::warn!(file = %t.cfg.path.display(), secret = %name, "removed: {e}");
                        metrics::counter!("coffer_agent_removals_total").increment(1);
                    }
                    t.digest = None;
                    t.state = FileState::Removed(format!("{name}: {e}"));
                }
                Err((name, e)) => {
                    // Nothing cached and no node answered: keep whatever file there is.
                    tracing::warn!(file = %t.cfg.path.display(), secret = %name, "not refreshed: {e}");
                    if t.digest.is_none() {
                        t.state = FileState::Missing(format!("{name}: {e}"));
                    }
                }
            }
        }
        self.report();
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    async fn values(
        &self,
        f: &FileConfig,
    ) -> Result<(BTreeMap<String, Zeroizing<Vec<u8>>>, BTreeMap<String, u64>, bool), (String, SdkError)> {
        let mut values = BTreeMap::new();
        let mut versions = BTreeMap::new();
        let mut stale = false;
        for name in &f.secrets {
            let s = self
                .sdk
                .get_alias(name, &f.alias)
                .await
                .map_err(|e| (name.clone(), e))?;
            stale |= s.stale;
            versions.insert(name.clone(), s.version);
            values.insert(name.clone(), Zeroizing::new(s.value.expose().to_vec()));
        }
        Ok((values, versions, stale))
    }

    /// The status: metrics always, the status file when it changed.
    fn report(&mut self) {
        let stale = self.files.iter().filter(|t| t.state == FileState::Stale).count();
        metrics::gauge!("coffer_agent_stale_files").set(stale as f64);
        let removed = self
            .files
            .iter()
            .filter(|t| matches!(t.state, FileState::Removed(_)))
            .count();
        metrics::gauge!("coffer_agent_removed_files").set(removed as f64);
        let Some(path) = &self.status_file else {
            return;
        };
        let files: Vec<serde_json::Value> = self
            .files
            .iter()
            .map(|t| {
                let (state, reason) = match &t.state {
                    FileState::Fresh => ("fresh", None),
                    FileState::Stale => (
                        "stale",
                        Some("no node answered; serving cached values within max_stale"),
                    ),
                    FileState::Removed(r) => ("removed", Some(r.as_str())),
                    FileState::Missing(r) => ("missing", Some(r.as_str())),
                };
                json!({"path": t.cfg.path, "state": state, "reason": reason, "versions": t.versions})
            })
            .collect();
        let text = json!({"files": files}).to_string();
        if text != self.last_status {
            match files::replace(path, text.as_bytes(), 0o600, None) {
                Ok(()) => self.last_status = text,
                Err(e) => tracing::warn!("cannot write the status file {}: {e}", path.display()),
            }
        }
    }
}

/// How long a reload command may run.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Tells the service its file changed: its reload command, or a signal to its pid (a file with
/// neither is only replaced).
async fn reload(f: &FileConfig) {
    if f.reload_command.is_empty() && f.signal_pid_file.is_none() {
        return;
    }
    metrics::counter!("coffer_agent_reloads_total").increment(1);
    if let Some((cmd, args)) = f.reload_command.split_first() {
        // Bounded: a command that hangs is killed, and the agent goes on keeping files current.
        let run = tokio::process::Command::new(cmd).args(args).kill_on_drop(true).status();
        match tokio::time::timeout(RELOAD_TIMEOUT, run).await {
            Ok(Ok(s)) if s.success() => {}
            Ok(Ok(s)) => {
                metrics::counter!("coffer_agent_reload_failures_total").increment(1);
                tracing::warn!(file = %f.path.display(), "the reload command exited with {s}");
            }
            Ok(Err(e)) => {
                metrics::counter!("coffer_agent_reload_failures_total").increment(1);
                tracing::warn!(file = %f.path.display(), "cannot run the reload command: {e}");
            }
            Err(_) => {
                metrics::counter!("coffer_agent_reload_failures_total").increment(1);
                tracing::warn!(file = %f.path.display(), "the reload command ran past {RELOAD_TIMEOUT:?}: killed");
            }
        }
    }
    if let Some(pid_file) = &f.signal_pid_file {
        let sig = signal_number(f.signal.as_deref().unwrap_or("HUP")).unwrap_or(libc::SIGHUP);
        let pid = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .filter(|p| *p > 1);
        match pid {
            // SAFETY: kill(2) with a pid read from the configured file and a fixed signal.
            Some(pid) if unsafe { libc::kill(pid, sig) } == 0 => {}
            _ => {
                metrics::counter!("coffer_agent_reload_failures_total").increment(1);
                tracing::warn!(file = %f.path.display(), "cannot signal the pid in {}", pid_file.display());
            }
        }
    }
}

/// Runs the agent: one pass (failing on a critical secret), then, unless `once`, a pass every
/// interval until `shutdown`.
pub async fn run(
    cfg: AgentConfig,
    sdk: Coffer,
    once: bool,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let mut agent = Agent::new(&cfg, sdk);
    agent.pass(true).await?;
    if once {
        return Ok(());
    }
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut shutdown => return Ok(()),
        }
        if let Err(e) = agent.pass(false).await {
            tracing::warn!("{e}");
        }
    }
}
