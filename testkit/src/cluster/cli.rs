//! The `coffer` binary run against one node.

use std::process::Command;
use std::process::Stdio;

use super::TestCluster;

impl TestCluster {
    /// Runs the `coffer` CLI against node `via`; returns (exit code, stdout, stderr).
    pub fn cli(&self, via: usize, args: &[&str]) -> (i32, String, String) {
        self.cli_env(via, args, &[])
    }

    /// Like [`TestCluster::cli`], with environment changes applied last (`None` removes the
    /// variable). With TLS on, `COFFER_CACERT` is the cluster's CA unless changed here.
    pub fn cli_env(&self, via: usize, args: &[&str], env: &[(&str, Option<&str>)]) -> (i32, String, String) {
        let mut cmd = self.cli_command(via, args);
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let out = cmd.output().expect("run coffer");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The `coffer` command [`TestCluster::cli`] runs, not started yet (to run several at once).
    pub fn cli_command(&self, via: usize, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("COFFER_ADDR", &self.file.nodes[via].api)
            .env("COFFER_TOKEN", self.token())
            .env_remove("COFFER_CACERT")
            .env_remove("COFFER_CLIENT_CERT")
            .env_remove("COFFER_CLIENT_KEY")
            .stdin(Stdio::null());
        if let Some(ca) = &self.file.ca_cert {
            cmd.env("COFFER_CACERT", ca);
        }
        cmd
    }

    /// `coffer ARGS --output json` against node `via`, which must succeed.
    pub fn cli_json(&self, via: usize, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let (code, out, err) = self.cli(via, &all);
        assert_eq!(code, 0, "coffer {all:?} failed: {err}{out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("coffer {all:?} printed no JSON ({e}): {out}"))
    }

    /// Polls `coffer secret describe NAME` (through the first live node) until `done` holds,
    /// for at most `secs`; panics with `what` and the last answer otherwise.
    pub async fn wait_describe(
        &self,
        name: &str,
        secs: u64,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        let mut last = serde_json::Value::Null;
        while std::time::Instant::now() < deadline {
            for via in (0..self.file.nodes.len()).filter(|i| self.is_running(*i)) {
                let (code, out, _) = self.cli(via, &["secret", "describe", name, "--output", "json"]);
                if code == 0 {
                    last = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
                    if done(&last) {
                        return last;
                    }
                    break;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("{what}: not within {secs}s; last describe: {last:#}");
    }
}
