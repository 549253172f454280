//! The audit log as a set of files: the live file (`audit.log`) and the files rotated out of it,
//! each named for the sequence number of its first record (`audit.log.00000000000000000001`,
//! twenty digits, so names sort in chain order). The chain runs on across them: the first
//! record of each file names the hash of the last record of the file before it.
//!
//! Retention removes the oldest rotated files. The oldest file left may then start at any
//! sequence number, but only a rotated file whose name states that number: a live file that
//! does not start at record 1 with nothing before it, or a file whose first record is not the
//! one its name promises, is damage, so deleting records at the start of any file is caught.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use prost::Message;

use super::chain::{verify_reader, Anchors, Broken, Frame, Frames, Start, TailEntry, VerifyReport};
use crate::pb;

/// Digits of a rotated file's sequence-number suffix.
const SEQ_DIGITS: usize = 20;

/// The name a file rotated out of `live` gets when its first record is `first_seq`.
pub(super) fn rotated_path(live: &Path, first_seq: u64) -> PathBuf {
    let mut name = live.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{first_seq:0SEQ_DIGITS$}"));
    live.with_file_name(name)
}

/// The files rotated out of `live`, oldest first, with the first sequence number their names
/// state.
pub(super) fn rotated_files(live: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let Some(base) = live.file_name().and_then(|n| n.to_str()) else {
        return Ok(vec![]);
    };
    let dir = match live.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut out = vec![];
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(suffix) = name
            .to_str()
            .and_then(|n| n.strip_prefix(base))
            .and_then(|n| n.strip_prefix('.'))
        else {
            continue;
        };
        if suffix.len() != SEQ_DIGITS || !suffix.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(seq) = suffix.parse::<u64>() {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Removes the oldest rotated files of `live` past the newest `retain`; returns how many.
pub(super) fn prune(live: &Path, retain: usize) -> io::Result<usize> {
    let files = rotated_files(live)?;
    let excess = files.len().saturating_sub(retain);
    for (_, path) in &files[..excess] {
        fs::remove_file(path)?;
    }
    Ok(excess)
}

/// Verifies the chain across every file of the log at `live` (rotated files, then `live`
/// itself if it exists). `live_tail`: `live` is being written, so a record cut at its end by a
/// concurrent write is not damage. A `Broken` position is the sequence number the broken record
/// should carry, and its problem names the file when there is more than one.
pub fn verify_log(live: &Path, live_tail: bool) -> io::Result<VerifyReport> {
    verify_anchored(live, live_tail, &Anchors::default())
}

/// [`verify_log`], and then the log against the heads the cluster anchored for it: a record
/// whose hash is not the anchored one (rewritten from there or before), an anchored record past
/// the log's end (cut at a record boundary), or a head the node went back below, is broken.
/// Anchors older than the oldest file retention kept are skipped. Read the anchors before the
/// log: every anchored record was durable when anchored, so a healthy log holds it.
pub fn verify_anchored(live: &Path, live_tail: bool, anchors: &Anchors) -> io::Result<VerifyReport> {
    let wanted: BTreeMap<u64, [u8; 32]> = anchors.heads.iter().map(|a| (a.seq, a.hash)).collect();
    let mut found = BTreeMap::new();
    let mut seen = |seq: u64, hash: &[u8; 32]| {
        if wanted.contains_key(&seq) {
            found.insert(seq, *hash);
        }
    };
    let mut report = verify_chain(live, live_tail, &mut seen)?;
    if report.broken.is_none() {
        check_anchors(&mut report, anchors, &found);
    }
    Ok(report)
}

/// Compares a verified chain (`found`: the hash of each anchored record it holds) with `anchors`.
fn check_anchors(report: &mut VerifyReport, anchors: &Anchors, found: &BTreeMap<u64, [u8; 32]>) {
    let at = crate::time::rfc3339_ms;
    report.anchored_through = anchors.heads.last().map_or(0, |a| a.seq);
    if let Some(s) = anchors.started_over.last() {
        report.broken = Some(Broken {
            position: s.seq,
            byte_offset: 0,
            problem: format!(
                "record {} was anchored through Raft, and at {} this node anchored an earlier or different record \
                 in its place: its audit log was cut, replaced or rewritten",
                s.seq,
                at(s.at_ms)
            ),
        });
        return;
    }
    let last = (report.first_seq + report.records).saturating_sub(1);
    for a in &anchors.heads {
        if a.seq < report.first_seq {
            continue;
        }
        let problem = match found.get(&a.seq) {
            Some(h) if *h == a.hash => {
                report.anchors_checked += 1;
                continue;
            }
            Some(_) => format!(
                "record {}: its hash is not the one anchored through Raft at {} (the log was rewritten from this \
                 record or before)",
                a.seq,
                at(a.at_ms)
            ),
            None => format!(
                "record {}: the log ends at record {last}, but record {} was anchored through Raft at {} (records \
                 were cut from its end)",
                last + 1,
                a.seq,
                at(a.at_ms)
            ),
        };
        report.broken = Some(Broken {
            position: a.seq.min(last + 1),
            byte_offset: 0,
            problem,
        });
        return;
    }
}

/// Verifies the hash chain across the log's files; `seen` gets every verified record's hash.
fn verify_chain(live: &Path, live_tail: bool, seen: &mut dyn FnMut(u64, &[u8; 32])) -> io::Result<VerifyReport> {
    let mut files = rotated_files(live)?;
    let live_exists = live.exists();
    if live_exists || files.is_empty() {
        files.push((0, live.to_path_buf()));
    }
    let count = files.len();
    let mut report = VerifyReport {
        records: 0,
        broken: None,
        first_seq: 1,
        files: count,
        ..Default::default()
    };
    let mut start = None;
    for (i, (named_seq, path)) in files.iter().enumerate() {
        let is_live = i + 1 == count && live_exists;
        let begin = match start {
            Some(s) => s,
            // The oldest file: record 1, or where its rotated name says it begins.
            None if !is_live && *named_seq > 1 => Start::Anchored { seq: *named_seq },
            None => Start::Genesis,
        };
        if i == 0 {
            if let Start::Anchored { seq } = begin {
                report.first_seq = seq;
            }
        }
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let r = verify_reader(BufReader::new(file), len, is_live && live_tail, begin, seen)?;
        let named = |problem: String| {
            if count > 1 {
                format!("{}: {problem}", path.display())
            } else {
                problem
            }
        };
        if let Some(b) = r.broken {
            report.broken = Some(Broken {
                position: report.first_seq + report.records + b.position - 1,
                byte_offset: b.byte_offset,
                problem: named(b.problem),
            });
            report.records += r.records;
            return Ok(report);
        }
        report.records += r.records;
        let expected_first = match begin {
            Start::Genesis => 1,
            Start::After { seq, .. } => seq + 1,
            Start::Anchored { seq } => seq,
        };
        match r.last {
            Some((seq, hash)) => start = Some(Start::After { seq, hash }),
            // A rotated file is never empty: an empty one lost its records.
            None if !is_live => {
                report.broken = Some(Broken {
                    position: expected_first,
                    byte_offset: 0,
                    problem: named(format!(
                        "record {expected_first}: the rotated file is empty (records deleted?)"
                    )),
                });
                return Ok(report);
            }
            None => {}
        }
        if !is_live && *named_seq != expected_first {
            report.broken = Some(Broken {
                position: expected_first,
                byte_offset: 0,
                problem: named(format!(
                    "record {expected_first}: the file is named for record {named_seq} (renamed, or records \
                     deleted at its start?)"
                )),
            });
            return Ok(report);
        }
    }
    Ok(report)
}

/// Verifies the whole chain of the audit log at `path` across its files (`coffer audit verify
/// --file`). Stops at the first problem. A tail cut exactly at a record boundary cannot be
/// detected from the files alone.
pub fn verify_file(path: &Path) -> io::Result<VerifyReport> {
    verify_log(path, false)
}

/// The newest `count` records that decode across the files of the log at `live`, oldest first.
/// Reads the newest files only, as many as it takes. Does not verify the chain.
pub fn tail_log(live: &Path, count: usize) -> io::Result<Vec<TailEntry>> {
    let mut files: Vec<PathBuf> = rotated_files(live)?.into_iter().map(|(_, p)| p).collect();
    if live.exists() || files.is_empty() {
        files.push(live.to_path_buf());
    }
    let mut newest: VecDeque<TailEntry> = VecDeque::new();
    for path in files.iter().rev() {
        if newest.len() >= count {
            break;
        }
        let mut older = tail_file(path, count - newest.len())?;
        while let Some(e) = older.pop_back() {
            newest.push_front(e);
        }
    }
    Ok(newest.into())
}

/// The newest `count` records of one file that decode, oldest first.
pub(super) fn tail_file(path: &Path, count: usize) -> io::Result<VecDeque<TailEntry>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut frames = Frames::new(BufReader::new(file), len);
    let mut newest = VecDeque::with_capacity(count.min(4096));
    if count == 0 {
        return Ok(newest);
    }
    while let Frame::Whole { body, .. } = frames.next()? {
        let Ok(record) = pb::AuditRecord::decode(body.as_slice()) else {
            continue;
        };
        let Ok(event) = pb::AuditEvent::decode(record.event.as_slice()) else {
            continue;
        };
        if newest.len() == count {
            newest.pop_front();
        }
        newest.push_back(TailEntry {
            seq: record.seq,
            event,
            hash: hex::encode(&record.hash),
        });
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::audit::file::{AuditFile, AuditOptions};

    fn event(i: usize) -> pb::AuditEvent {
        pb::AuditEvent {
            time_ms: 1_700_000_000_000 + i as u64,
            principal: format!("token:p{i}"),
            action: "secrets:read".into(),
            resource: format!("acme/db/password-{i:04}"),
            decision: "allow".into(),
            ..Default::default()
        }
    }

    /// Rotates every ~20 records, keeps 3 rotated files.
    fn small() -> AuditOptions {
        AuditOptions {
            write_timeout: Duration::from_secs(10),
            max_file_bytes: 2_000,
            retain_files: 3,
            ..AuditOptions::default()
        }
    }

    async fn write(path: &Path, from: usize, to: usize) {
        let log = AuditFile::open(path.to_path_buf(), small());
        for i in from..=to {
            log.append(event(i)).await.unwrap();
        }
    }

    fn seqs(path: &Path, n: usize) -> Vec<u64> {
        tail_log(path, n).unwrap().iter().map(|e| e.seq).collect()
    }

    #[tokio::test]
    async fn the_chain_runs_across_rotated_files_and_retention_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write(&path, 1, 300).await;
        let rotated = rotated_files(&path).unwrap();
        assert_eq!(rotated.len(), 3, "{rotated:?}");
        for (_, f) in &rotated {
            let len = fs::metadata(f).unwrap().len();
            assert!((2_000..4_000).contains(&len), "{} is {len} bytes", f.display());
        }
        let report = verify_file(&path).unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.files, 4);
        // Retention removed the oldest records; the rest verify from the first one kept.
        assert!(report.first_seq > 1);
        assert_eq!(report.first_seq, rotated[0].0);
        assert_eq!(report.first_seq + report.records - 1, 300);
        // A tail longer than the live file reaches into the rotated ones, in order.
        let live = tail_file(&path, 1000).unwrap().len() as u64;
        let want: Vec<u64> = (300 - live - 4..=300).collect();
        assert_eq!(seqs(&path, want.len()), want);
        // A reopened log continues the chain where it stopped.
        write(&path, 301, 310).await;
        assert_eq!(seqs(&path, 1), vec![310]);
        assert!(verify_file(&path).unwrap().is_ok());
    }

    #[tokio::test]
    async fn a_crash_between_the_rename_and_the_new_file_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write(&path, 1, 10).await;
        // What the rename leaves when the node dies before the new live file exists.
        fs::rename(&path, rotated_path(&path, 1)).unwrap();
        write(&path, 11, 12).await;
        assert_eq!(seqs(&path, 3), vec![10, 11, 12]);
        let report = verify_file(&path).unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!((report.records, report.first_seq, report.files), (12, 1, 2));
    }

    /// A log of 300 records over 4 files (3 rotated), then `damage` done to it.
    async fn damaged(damage: impl FnOnce(&Path, &[(u64, PathBuf)])) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write(&path, 1, 300).await;
        assert!(verify_file(&path).unwrap().is_ok());
        damage(&path, &rotated_files(&path).unwrap());
        verify_file(&path).unwrap().broken.map(|b| b.problem)
    }

    #[tokio::test]
    async fn verify_catches_files_deleted_renamed_emptied_or_trimmed() {
        // A middle file deleted.
        let p = damaged(|_, r| fs::remove_file(&r[1].1).unwrap())
            .await
            .expect("a deleted middle file");
        assert!(p.contains("sequence number"), "{p}");
        // Every rotated file deleted: the live file does not start at record 1.
        let p = damaged(|_, r| r.iter().for_each(|(_, f)| fs::remove_file(f).unwrap()))
            .await
            .expect("every rotated file deleted");
        assert!(p.contains("record 1"), "{p}");
        // The oldest file's first record deleted: its name no longer matches.
        let p = damaged(|_, r| {
            let bytes = fs::read(&r[0].1).unwrap();
            let (len, n) = crate::audit::chain::read_varint(&bytes).unwrap();
            fs::write(&r[0].1, &bytes[n + len as usize..]).unwrap();
        })
        .await
        .expect("a trimmed oldest file");
        assert!(p.contains("sequence number"), "{p}");
        // A rotated file emptied.
        let p = damaged(|_, r| fs::write(&r[2].1, b"").unwrap())
            .await
            .expect("an emptied file");
        assert!(p.contains("empty"), "{p}");
        // A rotated file renamed out of order.
        let p = damaged(|live, r| fs::rename(&r[1].1, rotated_path(live, r[1].0 + 1)).unwrap())
            .await
            .expect("a renamed file");
        assert!(p.contains("named for record"), "{p}");
    }
}
