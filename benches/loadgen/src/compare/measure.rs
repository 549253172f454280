//! What every measured run uses: connections to a system, the load average, and the check
//! that a run served something.

use anyhow::Context;

use crate::load::Outcome;
use crate::openbao::OpenBao;
use crate::systems;
use crate::target::Conn;
use crate::target::System;

pub fn loadavg() -> [f64; 3] {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = s.split_whitespace().map(|x| x.parse().unwrap_or(f64::NAN));
    [
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
    ]
}

/// A system that completed no request in a measured run has stopped (a full disk stops a
/// node's Raft core); a row of zeros would read as a measurement, so the comparison ends there.
pub(super) fn ensure_served(s: System, o: &Outcome, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        o.ops > 0,
        "{s} completed no request in {what} ({} errors{}): it has stopped. See its nodes' logs, \
         and check free disk space",
        o.errors,
        o.first_error
            .as_deref()
            .map(|e| format!(", first: {e}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// Everything a comparison measures, running.
pub(super) struct Fleet {
    pub coffer: systems::Coffer,
    pub etcd: systems::Etcd,
    pub echo: systems::EchoServer,
    /// Started when the plan measures it.
    pub openbao: Option<OpenBao>,
}

impl Fleet {
    fn openbao(&self) -> anyhow::Result<&OpenBao> {
        self.openbao
            .as_ref()
            .context("OpenBao is not running in this comparison")
    }
}

/// `n` connections to `system`, spread round-robin over its members (OpenBao: over its active
/// node, or over its standbys).
pub(super) async fn conns(system: System, n: usize, fleet: &Fleet) -> anyhow::Result<Vec<Conn>> {
    let (coffer, etcd, echo) = (&fleet.coffer, &fleet.etcd, &fleet.echo);
    let standbys = match system {
        System::OpenBaoStandby => fleet.openbao()?.standbys(),
        _ => vec![],
    };
    systems::connect(n, async |i| match system {
        System::Coffer => Conn::coffer(&coffer.apis[i % coffer.apis.len()], &coffer.token).await,
        System::Etcd => Conn::etcd(&etcd.client_urls[i % etcd.client_urls.len()]).await,
        System::Echo => Conn::echo(&echo.addr).await,
        System::CofferHttp => Ok(Conn::http(&coffer.https[i % coffer.https.len()], &coffer.token)),
        System::OpenBao => {
            let bao = fleet.openbao()?;
            Ok(Conn::openbao(&bao.apis[bao.active], &bao.token))
        }
        System::OpenBaoStandby => Ok(Conn::openbao(&standbys[i % standbys.len()], &fleet.openbao()?.token)),
    })
    .await
}
