//! The backup file (`coffer snapshot save|inspect|restore`; docs/architecture.md: Backups).
//!
//! Layout: [`MAGIC`], then frames. A frame is its payload's length (u32, big endian), the
//! payload's crc32c (u32, big endian) and the payload, one protobuf `BackupFrame`: the first
//! holds the header (cluster, applied entry, time), the last the trailer (counts and the
//! SHA-256 of every byte before the trailer frame), the ones between chunks of state-machine
//! pairs. Values stay as the state machine holds them: envelopes wrapped under the regions'
//! KMS keys, so a backup is no more readable than the cluster's disks.
//!
//! Reading checks every frame as it goes, so a flipped byte is reported with the offsets of
//! the frame that holds it, a cut file as truncated, and anything after the trailer as
//! foreign. Nothing of a file is used before all of it was read and verified.

use std::io;
use std::io::Read;
use std::io::Write;

use prost::Message;
use sha2::Digest;
use sha2::Sha256;

use crate::pb;
use crate::pb::backup_frame::Body;

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 16] = b"COFFER-BACKUP-1\n";
/// The header's format number this build writes and reads.
pub const FORMAT: u32 = 1;
/// The largest frame read: far above a chunk, so only a corrupt length can exceed it.
pub const MAX_FRAME_BYTES: u32 = 64 << 20;
/// Pairs go out in chunks of about this many bytes.
const CHUNK_BYTES: usize = 256 * 1024;
const FRAME_HEAD: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Not a backup of this format at all (another file, or a newer format).
    #[error("{0}")]
    Foreign(String),
    /// A backup whose bytes are damaged: the frame at `start..end` (or from `start`).
    #[error("corrupt backup: {what} (the frame at byte offset {start}{})", .end.map(|e| format!("..{e}")).unwrap_or_default())]
    Corrupt { start: u64, end: Option<u64>, what: String },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Writes a backup: the header at once, then pairs, then the trailer on [`Writer::finish`].
pub struct Writer<W: Write> {
    out: W,
    sha: Sha256,
    written: u64,
    pairs: u64,
    chunks: u64,
    chunk: Vec<pb::KvPair>,
    chunk_bytes: usize,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W, header: pb::BackupHeader) -> io::Result<Self> {
        let mut w = Writer {
            out,
            sha: Sha256::new(),
            written: 0,
            pairs: 0,
            chunks: 0,
            chunk: Vec::new(),
            chunk_bytes: 0,
        };
        w.put(MAGIC)?;
        w.frame(Body::Header(pb::BackupHeader {
            format: FORMAT,
            ..header
        }))?;
        Ok(w)
    }

    pub fn pair(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.chunk_bytes += key.len() + value.len() + 8;
        self.chunk.push(pb::KvPair {
            key: key.to_vec(),
            value: value.to_vec(),
        });
        self.pairs += 1;
        if self.chunk_bytes >= CHUNK_BYTES {
            self.flush_chunk()?;
        }
        Ok(())
    }

    /// Bytes written so far (for progress).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes the trailer and hands back the output and the trailer.
    pub fn finish(mut self) -> io::Result<(W, pb::BackupTrailer)> {
        self.flush_chunk()?;
        let trailer = pb::BackupTrailer {
            pairs: self.pairs,
            chunks: self.chunks,
            sha256: self.sha.clone().finalize().to_vec(),
        };
        self.frame(Body::Trailer(trailer.clone()))?;
        self.out.flush()?;
        Ok((self.out, trailer))
    }

    fn flush_chunk(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let pairs = std::mem::take(&mut self.chunk);
        self.chunk_bytes = 0;
        self.chunks += 1;
        self.frame(Body::Chunk(pb::BackupChunk { pairs }))
    }

    fn frame(&mut self, body: Body) -> io::Result<()> {
        let payload = pb::BackupFrame { body: Some(body) }.encode_to_vec();
        let mut head = [0u8; FRAME_HEAD];
        head[..4].copy_from_slice(&(payload.len() as u32).to_be_bytes());
        head[4..].copy_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
        self.put(&head)?;
        self.put(&payload)
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.sha.update(b);
        self.written += b.len() as u64;
        Ok(())
    }
}

/// What a verified backup says about itself.
#[derive(Debug, Clone)]
pub struct Verified {
    pub header: pb::BackupHeader,
    pub trailer: pb::BackupTrailer,
    /// The file's length.
    pub bytes: u64,
}

/// Reads a whole backup from `r`, checking every frame, and calls `each` with every pair in
/// order. An error names what is wrong and where; `each` may have seen pairs by then, so a
/// caller keeps them aside until this returns `Ok`.
pub fn read(r: impl Read, each: &mut dyn FnMut(pb::KvPair)) -> Result<Verified, BackupError> {
    let mut r = io::BufReader::with_capacity(1 << 20, r);
    let mut sha = Sha256::new();
    let mut magic = [0u8; MAGIC.len()];
    let got = read_full(&mut r, &mut magic)?;
    if got < MAGIC.len() || &magic != MAGIC {
        return Err(BackupError::Foreign(if magic.starts_with(b"COFFER-BACKUP-") {
            format!(
                "this backup's format ({}) is not one this coffer reads ({})",
                String::from_utf8_lossy(&magic[14..got.max(14)]).trim(),
                String::from_utf8_lossy(&MAGIC[14..]).trim()
            )
        } else {
            "not a Coffer backup: it does not start with COFFER-BACKUP-1".into()
        }));
    }
    sha.update(magic);
    let mut offset = MAGIC.len() as u64;
    let mut header: Option<pb::BackupHeader> = None;
    let mut trailer: Option<pb::BackupTrailer> = None;
    let (mut pairs, mut chunks) = (0u64, 0u64);
    loop {
        let start = offset;
        let corrupt = |end: Option<u64>, what: String| BackupError::Corrupt { start, end, what };
        let mut head = [0u8; FRAME_HEAD];
        match read_full(&mut r, &mut head)? {
            0 if trailer.is_some() => break,
            0 => return Err(corrupt(None, "the file ends before its trailer (truncated)".into())),
            _ if trailer.is_some() => return Err(corrupt(None, "bytes follow the trailer".into())),
            n if n < FRAME_HEAD => return Err(corrupt(None, "the file ends inside a frame (truncated)".into())),
            _ => {}
        }
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_FRAME_BYTES {
            return Err(corrupt(
                None,
                format!("a frame length of {len} bytes is above the limit"),
            ));
        }
        let end = start + (FRAME_HEAD as u64) + u64::from(len);
        let mut payload = vec![0u8; len as usize];
        if read_full(&mut r, &mut payload)? < payload.len() {
            return Err(corrupt(Some(end), "the file ends inside a frame (truncated)".into()));
        }
        if crc32c::crc32c(&payload) != crc {
            return Err(corrupt(Some(end), "checksum mismatch".into()));
        }
        let frame = pb::BackupFrame::decode(&*payload).map_err(|_| corrupt(Some(end), "undecodable frame".into()))?;
        let body = frame.body.ok_or_else(|| corrupt(Some(end), "an empty frame".into()))?;
        match (body, header.is_some()) {
            (Body::Header(h), false) => {
                if h.format != FORMAT {
                    return Err(BackupError::Foreign(format!(
                        "this backup's format ({}) is not one this coffer reads ({FORMAT})",
                        h.format
                    )));
                }
                header = Some(h);
            }
            (_, false) => return Err(corrupt(Some(end), "the first frame is not the header".into())),
            (Body::Header(_), true) => return Err(corrupt(Some(end), "a second header".into())),
            (Body::Chunk(c), true) => {
                chunks += 1;
                pairs += c.pairs.len() as u64;
                c.pairs.into_iter().for_each(&mut *each);
            }
            (Body::Trailer(t), true) => {
                let digest = sha.clone().finalize();
                if t.sha256 != digest.as_slice() {
                    return Err(corrupt(
                        Some(end),
                        "the file's SHA-256 does not match its trailer".into(),
                    ));
                }
                if (t.pairs, t.chunks) != (pairs, chunks) {
                    return Err(corrupt(
                        Some(end),
                        format!(
                            "the trailer counts {} pairs in {} chunks, the file holds {pairs} in {chunks}",
                            t.pairs, t.chunks
                        ),
                    ));
                }
                trailer = Some(t);
            }
        }
        if trailer.is_none() {
            sha.update(head);
            sha.update(&payload);
        }
        offset = end;
    }
    Ok(Verified {
        header: header.expect("a trailer is only taken after a header"),
        trailer: trailer.expect("the loop ends at the trailer"),
        bytes: offset,
    })
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> pb::BackupHeader {
        pb::BackupHeader {
            cluster_id: "fake-cluster".into(),
            applied: Some(pb::LogId {
                term: 3,
                node_id: 1,
                index: 42,
            }),
            taken_at_ms: 1_800_000_000_000,
            node: "us-east-1".into(),
            ..Default::default()
        }
    }

    /// A backup of `n` pairs, big enough for several chunks.
    fn backup(n: usize) -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), header()).unwrap();
        for i in 0..n {
            w.pair(format!("s/acme/key-{i:05}").as_bytes(), &[i as u8; 700])
                .unwrap();
        }
        w.finish().unwrap().0
    }

    fn read_all(b: &[u8]) -> Result<(Verified, Vec<pb::KvPair>), BackupError> {
        let mut pairs = Vec::new();
        let v = read(b, &mut |p| pairs.push(p))?;
        Ok((v, pairs))
    }

    #[test]
    fn a_backup_reads_back_every_pair_in_order_with_its_header_and_counts() {
        let b = backup(1000);
        let (v, pairs) = read_all(&b).unwrap();
        assert_eq!(pairs.len(), 1000);
        assert_eq!(pairs[7].key, b"s/acme/key-00007");
        assert_eq!(pairs[7].value, vec![7u8; 700]);
        assert_eq!(v.header.cluster_id, "fake-cluster");
        assert_eq!(v.header.format, FORMAT);
        assert_eq!((v.trailer.pairs, v.bytes), (1000, b.len() as u64));
        assert!(v.trailer.chunks >= 3, "{} chunks", v.trailer.chunks);
        // An empty state is a valid backup too.
        assert_eq!(read_all(&backup(0)).unwrap().0.trailer.pairs, 0);
    }

    #[test]
    fn every_flipped_byte_is_refused_with_the_offsets_of_its_frame() {
        let b = backup(600);
        // Every byte of a small backup, and a stride through the big one.
        let small = backup(2);
        for (file, step) in [(&small, 1), (&b, 97)] {
            for i in (0..file.len()).step_by(step) {
                let mut bad = file.clone();
                bad[i] ^= 0x40;
                let err = read_all(&bad).expect_err(&format!("byte {i} flipped"));
                match err {
                    BackupError::Corrupt { start, end, .. } => {
                        assert!(start <= i as u64, "byte {i}: frame from {start}");
                        if let Some(end) = end {
                            assert!((i as u64) < end || start == i as u64, "byte {i}: frame {start}..{end}");
                        }
                    }
                    BackupError::Foreign(_) => assert!(i < MAGIC.len(), "byte {i}: {err}"),
                    BackupError::Io(e) => panic!("byte {i}: {e}"),
                }
            }
        }
        let mut bad = b.clone();
        bad[5000] ^= 1;
        let msg = read_all(&bad).unwrap_err().to_string();
        assert!(
            msg.starts_with("corrupt backup: checksum mismatch (the frame at byte offset "),
            "{msg}"
        );
    }

    #[test]
    fn a_cut_file_extra_bytes_and_foreign_files_are_refused_with_what_is_wrong() {
        let b = backup(600);
        for cut in [MAGIC.len(), MAGIC.len() + 3, b.len() / 2, b.len() - 1] {
            let msg = read_all(&b[..cut]).unwrap_err().to_string();
            assert!(msg.contains("truncated"), "cut at {cut}: {msg}");
        }
        let mut extra = b.clone();
        extra.extend_from_slice(b"more");
        assert!(read_all(&extra)
            .unwrap_err()
            .to_string()
            .contains("bytes follow the trailer"));
        for foreign in [&b"{\"not\": \"a backup\"}"[..], b"", b"COFFER-BACKUP-9\nxxxxxxxx"] {
            let e = read_all(foreign).unwrap_err();
            assert!(matches!(e, BackupError::Foreign(_)), "{e}");
        }
        assert!(read_all(b"COFFER-BACKUP-9\nxxxxxxxx")
            .unwrap_err()
            .to_string()
            .contains("format (9) is not one this coffer reads (1)"));
    }

    #[test]
    fn a_trailer_that_lies_about_the_content_is_refused() {
        // Drop a whole chunk frame (a valid frame, so only the trailer can tell).
        let b = backup(600);
        let mut frames = Vec::new();
        let mut at = MAGIC.len();
        while at < b.len() {
            let len = u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            frames.push(at..at + FRAME_HEAD + len);
            at += FRAME_HEAD + len;
        }
        let mut cut = b[..frames[1].start].to_vec();
        for f in &frames[2..] {
            cut.extend_from_slice(&b[f.clone()]);
        }
        let msg = read_all(&cut).unwrap_err().to_string();
        assert!(msg.contains("SHA-256 does not match"), "{msg}");
    }
}
