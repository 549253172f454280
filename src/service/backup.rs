//! A backup of the cluster's state, streamed from this replica (`coffer snapshot save`;
//! docs/architecture.md: Backups): after a linearizable barrier, so it holds every write
//! acknowledged before the request, from one consistent view, in the file format of
//! [`crate::backup::file`]. Values stay wrapped under the regions' KMS keys; destroyed
//! versions are not in the state machine, so not in any backup taken after the destroy.

use std::io;
use std::io::Write;

use tokio::sync::mpsc;

use super::Service;
use crate::backup::file::Writer;
use crate::error::ApiError;
use crate::pb;

/// Bytes per streamed message.
pub const MESSAGE_BYTES: usize = 1 << 20;
/// Messages buffered ahead of a slow client (the view is held open meanwhile).
const AHEAD: usize = 4;

pub type BackupChunks = mpsc::Receiver<Result<Vec<u8>, ApiError>>;

impl Service {
    /// Streams a backup of this replica once it has applied every write acknowledged before
    /// the call. A failure midway ends the stream with an error (the client never renames a
    /// partial file into place).
    pub async fn backup(&self) -> Result<BackupChunks, ApiError> {
        self.check_member()?;
        self.caught_up("backup").await?;
        let cluster = self.cluster_here()?.ok_or_else(|| {
            ApiError::NotBootstrapped("the cluster is not bootstrapped yet; nothing to back up".into())
        })?;
        let reader = self.raft.reader().clone();
        let me = self.me.clone();
        let (tx, rx) = mpsc::channel(AHEAD);
        tokio::task::spawn_blocking(move || {
            let view = reader.view();
            let written = (|| {
                let applied = coffer_raft::backup::applied(&*view)?
                    .ok_or_else(|| io::Error::other("this replica has applied nothing"))?;
                let header = pb::BackupHeader {
                    cluster_id: cluster.cluster_id.clone(),
                    applied: Some(applied),
                    taken_at_ms: crate::time::now_ms(),
                    node: me.name.clone(),
                    region: me.region.clone(),
                    regions: cluster.regions.iter().map(|r| r.region.clone()).collect(),
                    coffer_version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                };
                let mut w = Writer::new(
                    ToChannel {
                        tx: &tx,
                        buf: Vec::new(),
                    },
                    header,
                )?;
                coffer_raft::backup::for_each_pair(&*view, &mut |k, v| w.pair(k, v))?;
                w.finish().map(|_| ())
            })();
            if let Err(e) = written {
                if e.kind() != io::ErrorKind::BrokenPipe {
                    tracing::warn!("a backup stream failed: {e}");
                    let _ = tx.blocking_send(Err(ApiError::Unavailable(format!(
                        "the backup failed on this node: {e}"
                    ))));
                }
            }
        });
        Ok(rx)
    }
}

/// Sends what is written as messages of [`MESSAGE_BYTES`]; a client gone is `BrokenPipe`.
struct ToChannel<'a> {
    tx: &'a mpsc::Sender<Result<Vec<u8>, ApiError>>,
    buf: Vec<u8>,
}

impl ToChannel<'_> {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(MESSAGE_BYTES));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ToChannel<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= MESSAGE_BYTES {
            self.send()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
