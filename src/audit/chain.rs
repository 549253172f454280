//! The audit record chain: its format, its hash and reading it back (`coffer audit verify`,
//! `coffer audit tail`). The writer is [`super::file::AuditFile`]; the format is documented there.

use std::fmt;
use std::io::{self, Read};

use prost::Message;
use sha2::{Digest, Sha256};

use crate::pb;

/// `AuditRecord.format` of the records the writer writes.
pub(super) const FORMAT: u32 = 1;
/// Domain separation prefix of the record hash.
const DOMAIN: &[u8] = b"coffer-audit-v1";
/// A length prefix above this is damage, not a record (events are a few hundred bytes).
const MAX_RECORD: u64 = 16 << 20;
/// The outcome of [`verify_file`](super::rotation::verify_file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records verified before the first broken one (all of them when `broken` is `None`).
    pub records: u64,
    /// The first problem found; verification stops there.
    pub broken: Option<Broken>,
    /// The sequence number verification started at: 1, or the first record retention kept.
    pub first_seq: u64,
    /// Files of the log (rotated ones and the live one).
    pub files: usize,
    /// Anchors (heads recorded through Raft) whose record was found with the anchored hash.
    pub anchors_checked: u64,
    /// The newest anchored record (0: none).
    pub anchored_through: u64,
}

/// One head of this node's audit log as the cluster recorded it through Raft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub hash: [u8; 32],
    pub at_ms: u64,
}

/// What the cluster holds of one node's audit log (`coffer_model::audit_anchors`): its anchored
/// heads, oldest first, and the heads it later went back below.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Anchors {
    pub heads: Vec<Anchor>,
    pub started_over: Vec<Anchor>,
}

impl Anchors {
    pub fn from_pb(a: &pb::AuditAnchors) -> Anchors {
        let list = |l: &[pb::AuditAnchor]| {
            l.iter()
                .filter_map(|a| {
                    Some(Anchor {
                        seq: a.seq,
                        hash: a.hash.as_slice().try_into().ok()?,
                        at_ms: a.at_ms,
                    })
                })
                .collect()
        };
        Anchors {
            heads: list(&a.anchors),
            started_over: list(&a.started_over),
        }
    }
}

impl VerifyReport {
    /// True when every record verified.
    pub fn is_ok(&self) -> bool {
        self.broken.is_none()
    }
}

/// Where and how the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The sequence number the broken record should carry (its 1-based position in the chain).
    pub position: u64,
    /// Offset of the broken record's length prefix.
    pub byte_offset: u64,
    /// One sentence that says what is wrong.
    pub problem: String,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem)
    }
}

/// One record of [`tail`].
#[derive(Debug, Clone, PartialEq)]
pub struct TailEntry {
    pub seq: u64,
    pub event: pb::AuditEvent,
    /// The record's hash, lower-case hex.
    pub hash: String,
}

/// SHA-256("coffer-audit-v1" || seq (u64 BE) || prev_hash || event).
pub fn chain_hash(seq: u64, prev_hash: &[u8], event: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(seq.to_be_bytes());
    h.update(prev_hash);
    h.update(event);
    h.finalize().into()
}

/// Whether a complete, plausible AuditRecord body (format 1, a 32-byte hash) starts anywhere in
/// `buf`, whatever the bytes before it.
pub(super) fn contains_record(buf: &[u8]) -> bool {
    // prost writes `format = 1` first and `seq` second: every body starts with 08 01 10.
    (0..buf.len()).any(|p| {
        buf[p..].starts_with(&[0x08, 0x01, 0x10])
            && complete_record_len(&buf[p..]).is_some_and(|n| {
                pb::AuditRecord::decode(&buf[p..p + n]).is_ok_and(|r| r.format == FORMAT && r.hash.len() == 32)
            })
    })
}

/// The length of the encoded AuditRecord at the start of `body`: up to the end of its field 5
/// (`hash`), which prost writes last. `None` if `body` ends first or is not protobuf.
fn complete_record_len(body: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < body.len() {
        let (key, n) = read_varint(&body[i..])?;
        i += n;
        match key & 7 {
            0 => i += read_varint(&body[i..])?.1,
            2 => {
                let (len, n) = read_varint(&body[i..])?;
                i += n;
                if len > (body.len() - i) as u64 {
                    return None;
                }
                i += len as usize;
                if key >> 3 == 5 {
                    return Some(i);
                }
            }
            _ => return None,
        }
    }
    None
}

/// Decodes a varint at the start of `buf`: (value, bytes used), or `None` if incomplete/invalid.
pub(super) fn read_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in buf.iter().enumerate().take(10) {
        if i == 9 && b > 1 {
            return None;
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

pub(super) enum Frame {
    /// A whole frame: the offset of its length prefix and its body.
    Whole {
        offset: u64,
        body: Vec<u8>,
    },
    /// The file (or the verified length) ends inside the frame at `offset`.
    Cut {
        offset: u64,
        missing: Option<u64>,
    },
    /// The length prefix at `offset` is not a plausible record length.
    BadLength {
        offset: u64,
        len: Option<u64>,
    },
    End,
}

/// Splits a byte stream of `limit` bytes into length-delimited frames.
pub(super) struct Frames<R> {
    r: R,
    offset: u64,
    limit: u64,
}

impl<R: Read> Frames<R> {
    pub(super) fn new(r: R, limit: u64) -> Self {
        Frames { r, offset: 0, limit }
    }

    pub(super) fn next(&mut self) -> io::Result<Frame> {
        let start = self.offset;
        if start >= self.limit {
            return Ok(Frame::End);
        }
        let mut len = 0u64;
        let mut i = 0;
        loop {
            if start + i >= self.limit {
                self.offset = self.limit;
                return Ok(Frame::Cut {
                    offset: start,
                    missing: None,
                });
            }
            let mut b = [0u8; 1];
            if let Err(e) = self.r.read_exact(&mut b) {
                return self.cut_if_eof(e, start, None);
            }
            if i == 9 && b[0] > 1 {
                self.offset = self.limit;
                return Ok(Frame::BadLength {
                    offset: start,
                    len: None,
                });
            }
            len |= u64::from(b[0] & 0x7f) << (7 * i);
            i += 1;
            if b[0] & 0x80 == 0 {
                break;
            }
        }
        let body_start = start + i;
        if len > MAX_RECORD {
            self.offset = self.limit;
            return Ok(Frame::BadLength {
                offset: start,
                len: Some(len),
            });
        }
        let available = self.limit - body_start;
        if len > available {
            self.offset = self.limit;
            return Ok(Frame::Cut {
                offset: start,
                missing: Some(len - available),
            });
        }
        let mut body = vec![0; len as usize];
        if let Err(e) = self.r.read_exact(&mut body) {
            return self.cut_if_eof(e, start, None);
        }
        self.offset = body_start + len;
        Ok(Frame::Whole { offset: start, body })
    }

    /// The file shrank while being read: report a cut frame.
    fn cut_if_eof(&mut self, e: io::Error, offset: u64, missing: Option<u64>) -> io::Result<Frame> {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            self.offset = self.limit;
            Ok(Frame::Cut { offset, missing })
        } else {
            Err(e)
        }
    }
}

/// Where one file's part of the chain starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    /// At record 1, whose `prev_hash` is 32 zero bytes: the first file of a log.
    Genesis,
    /// Right after the record `seq` whose hash is `hash`: the previous file ended there.
    After { seq: u64, hash: [u8; 32] },
    /// At record `seq`, after whatever hash it names: the oldest file left by retention.
    Anchored { seq: u64 },
}

/// What [`verify_reader`] found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileReport {
    /// Records verified before the first broken one.
    pub records: u64,
    /// The first problem, with its position counted in this file.
    pub broken: Option<Broken>,
    /// The last verified record's seq and hash (`None`: none verified).
    pub last: Option<(u64, [u8; 32])>,
}

/// Verifies one file's records as the part of the chain that begins at `start`. `live`: the
/// file is being written, so a cut last record is not a problem. `seen` is given each record
/// that verified, with its hash.
pub(super) fn verify_reader(
    r: impl Read,
    limit: u64,
    live: bool,
    start: Start,
    seen: &mut dyn FnMut(u64, &[u8; 32]),
) -> io::Result<FileReport> {
    let mut frames = Frames::new(r, limit);
    let (mut prev, base) = match start {
        Start::Genesis => ([0u8; 32], 0),
        Start::After { seq, hash } => (hash, seq),
        Start::Anchored { seq } => ([0u8; 32], seq.saturating_sub(1)),
    };
    let mut position = 0u64;
    let mut last = None;
    loop {
        let frame = frames.next()?;
        position += 1;
        let n = position;
        // The sequence number this record must carry.
        let e = base + n;
        let broken = |offset: u64, problem: String| {
            Ok(FileReport {
                records: n - 1,
                broken: Some(Broken {
                    position: n,
                    byte_offset: offset,
                    problem,
                }),
                last,
            })
        };
        let (offset, body) = match frame {
            Frame::End => {
                return Ok(FileReport {
                    records: n - 1,
                    broken: None,
                    last,
                })
            }
            Frame::Cut { .. } if live => {
                // A record being written while we read: not a problem of the file.
                return Ok(FileReport {
                    records: n - 1,
                    broken: None,
                    last,
                });
            }
            Frame::Cut { offset, missing } => {
                let what = match missing {
                    Some(m) => format!("the file ends {m} byte(s) before the end of the record"),
                    None => "the file ends inside the record's length prefix".to_string(),
                };
                return broken(
                    offset,
                    format!("record {e} (byte {offset}): {what} (truncated, garbage appended, or its length prefix edited?)"),
                );
            }
            Frame::BadLength { offset, len } => {
                let what = match len {
                    Some(l) => format!("length prefix {l} is not a plausible record length"),
                    None => "the length prefix is not a valid varint".to_string(),
                };
                return broken(
                    offset,
                    format!("record {e} (byte {offset}): {what} (edited or garbage?)"),
                );
            }
            Frame::Whole { offset, body } => (offset, body),
        };
        let record = match pb::AuditRecord::decode(body.as_slice()) {
            Ok(r) => r,
            Err(err) => {
                return broken(
                    offset,
                    format!(
                        "record {e} (byte {offset}): does not decode as an audit record ({err}) (edited or garbage?)"
                    ),
                );
            }
        };
        if record.format != FORMAT {
            return broken(
                offset,
                format!(
                    "record {e} (byte {offset}): format {}, expected {FORMAT} (edited, garbage, or written by a newer \
                     version?)",
                    record.format
                ),
            );
        }
        if record.seq != e {
            return broken(
                offset,
                format!(
                    "record {e}: sequence number {}, expected {e} (a record was deleted or moved)",
                    record.seq
                ),
            );
        }
        if n == 1 && matches!(start, Start::Anchored { .. }) && record.prev_hash.len() == 32 {
            prev.copy_from_slice(&record.prev_hash);
        }
        if record.prev_hash != prev {
            let problem = match start {
                Start::Genesis if n == 1 => {
                    "record 1: prev_hash is not 32 zero bytes (records deleted at the start, or edited)".to_string()
                }
                Start::After { .. } if n == 1 => format!(
                    "record {e}: prev_hash does not match record {}'s hash, the last of the previous file (a file \
                     replaced, or records deleted or inserted)",
                    e - 1
                ),
                _ => format!(
                    "record {e}: prev_hash does not match record {}'s hash (records deleted, inserted or reordered)",
                    e - 1
                ),
            };
            return broken(offset, problem);
        }
        let hash = chain_hash(record.seq, &record.prev_hash, &record.event);
        let event = pb::AuditEvent::decode(record.event.as_slice());
        if record.hash != hash {
            let also = match event {
                Ok(_) => String::new(),
                Err(err) => format!("; its event does not decode either ({err})"),
            };
            return broken(
                offset,
                format!("record {e} (byte {offset}): hash does not match its contents (edited?){also}"),
            );
        }
        if let Err(err) = event {
            return broken(
                offset,
                format!("record {e} (byte {offset}): its event does not decode ({err}), though its hash matches"),
            );
        }
        seen(record.seq, &hash);
        prev = hash;
        last = Some((record.seq, hash));
    }
}
