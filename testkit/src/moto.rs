//! A real moto server (AWS API emulator) on loopback, for the `aws` KMS provider's tests.
//!
//! `make test` installs moto into a Python venv and exports `COFFER_MOTO_SERVER` with the path
//! of its `moto_server`. Without it the tests fail with a message saying so: they are never
//! skipped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

pub struct MotoServer {
    child: Child,
    addr: SocketAddr,
}

fn moto_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("COFFER_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    home.join(".cache/coffer/venv/bin/moto_server")
}

impl MotoServer {
    /// Starts moto on a free loopback port and waits until it answers.
    pub async fn start() -> Self {
        let bin = moto_binary();
        assert!(
            bin.exists(),
            "moto_server not found at {} — run the tests with `make test`, which installs moto into a \
             Python venv (or set COFFER_MOTO_SERVER)",
            bin.display()
        );
        let port = crate::free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut moto = MotoServer { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited at start ({status})");
            }
            if crate::http_get(addr, "/moto-api/").await.is_ok() {
                return moto;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on {addr} within 30s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
