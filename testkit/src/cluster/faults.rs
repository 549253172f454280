//! Faults a test injects: kill, graceful stop, restart, cut and heal links.

use std::time::Duration;
use std::time::Instant;

use super::TestCluster;
use crate::proxy::DelayProxy;

impl TestCluster {
    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait: a graceful stop that flushes storage.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            // SAFETY: kill(2) on our own, unreaped child.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            panic!("node {i} did not stop within 15s after SIGTERM");
        }
    }

    pub fn stop_all(&mut self) {
        for i in 0..self.children.len() {
            self.stop(i);
        }
    }

    /// Starts node `i` (again, or for the first time if it is a spare).
    pub fn restart(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "node {i} is running");
        self.children[i] = Some(self.spawn(i));
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    fn proxy(&self, from: usize, to: usize) -> &DelayProxy {
        self.proxies
            .get(&(from, to))
            .expect("the cluster was started without proxies (set ClusterSpec::rtt_ms)")
    }

    /// Cuts the link `from` -> `to` (what `from` sends to `to`, and the replies).
    pub fn cut(&self, from: usize, to: usize) {
        self.proxy(from, to).cut();
    }

    pub fn heal(&self, from: usize, to: usize) {
        self.proxy(from, to).heal();
    }

    /// Cuts every link to and from node `i`.
    pub fn isolate(&self, i: usize) {
        for j in 0..self.file.nodes.len() {
            if i != j {
                self.cut(i, j);
                self.cut(j, i);
            }
        }
    }

    pub fn heal_all(&self) {
        for p in self.proxies.values() {
            p.heal();
        }
    }
}
