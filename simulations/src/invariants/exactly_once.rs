//! Every command is applied at most once, and every client is told the real outcome.
//!
//! - A request's record never changes: the same id recorded again with another outcome or
//!   index means the command was applied a second time.
//! - What a client was told agrees with the record of its request: an acknowledged write was
//!   applied, with the version and at the index it was told; a refusal the state machine gave is
//!   the one recorded, and a refused write has no successful record.
//! - Each node's table is whole (every queue entry has its record and the other way round), and
//!   nodes that applied the same log hold the same table: expiry depends on the log alone.

use std::collections::BTreeMap;

use super::evidence::Violation;
use super::resolve;
use super::resolve::Recorded;
use crate::cluster::RequestTable;
use crate::history::History;
use crate::history::Outcome;

pub fn check(h: &History, tables: &[RequestTable]) -> Vec<Violation> {
    let mut out = Vec::new();
    let v = |d: String| Violation::new("exactly_once", d);
    let mut reported = std::collections::BTreeSet::new();
    // One violation per request, however many nodes hold the second record.
    for (id, first, later) in h
        .requests
        .changed
        .iter()
        .filter(|(id, _, _)| reported.insert(id.clone()))
    {
        out.push(v(format!(
            "request {id} was applied twice: recorded on {} as {} (applied at {} ms), then on {} as {} (applied at \
             {} ms)",
            first.node,
            resolve::describe(&first.record),
            first.record.applied_at_ms,
            later.node,
            resolve::describe(&later.record),
            later.record.applied_at_ms,
        )));
    }
    for o in h.ops.iter().filter(|o| o.kind.is_write()) {
        let effect = match resolve::effect(h, o) {
            Ok(e) => e,
            Err(e) => {
                out.push(v(e));
                continue;
            }
        };
        let told = match &o.outcome {
            Outcome::Unknown(_) => continue,
            Outcome::Ok(r) => Ok(r),
            Outcome::Failed(code) => Err(code.as_str()),
        };
        let wrong = match (told, &effect) {
            (Ok(r), Some(e)) => match e.recorded {
                Recorded::Ok { version } if version != r.version => {
                    Some(format!("version {version} at index {}", e.index))
                }
                Recorded::Ok { .. } if r.log_index != 0 && r.log_index != e.index => Some(format!("index {}", e.index)),
                Recorded::Ok { .. } => None,
                Recorded::Refused(code) => Some(format!("a refusal ({code}) at index {}", e.index)),
            },
            (Ok(_), None) => Some("nothing: no record of it being applied".into()),
            (Err(code), Some(e)) => match e.recorded {
                Recorded::Refused(c) if c == code => None,
                ref other => Some(format!("{other:?} at index {}", e.index)),
            },
            // Refused before it reached the log (or a put that lost every version race).
            (Err(_), None) => None,
        };
        if let Some(recorded) = wrong {
            out.push(v(format!(
                "op #{} was answered {:?}, but the cluster recorded {recorded}: {}",
                o.id,
                o.outcome,
                o.line()
            )));
        }
    }
    out.extend(tables_whole(tables).into_iter().map(v));
    out.extend(replicas_agree(tables).into_iter().map(v));
    out
}

fn tables_whole(tables: &[RequestTable]) -> Vec<String> {
    use coffer::pb;
    use coffer_model::keys;
    use prost::Message;
    let mut out = Vec::new();
    for t in tables {
        let get = |k: &[u8]| t.pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        let Some(meta) = get(keys::REQUESTS_META) else {
            continue;
        };
        let Ok(meta) = pb::RequestTableMeta::decode(&*meta) else {
            out.push(format!("{}: the request table's bookkeeping does not decode", t.node));
            continue;
        };
        let records = t
            .pairs
            .iter()
            .filter(|(k, _)| k.starts_with(keys::REQUEST_PREFIX))
            .count() as u64;
        let queued = t
            .pairs
            .iter()
            .filter(|(k, _)| k.starts_with(keys::REQUEST_QUEUE_PREFIX))
            .count() as u64;
        let live = meta.tail.saturating_sub(meta.head);
        if records != live || queued != live {
            out.push(format!(
                "{}: the request table holds {records} records and {queued} queue entries, but its queue spans \
                 {live} ([{}, {}))",
                t.node, meta.head, meta.tail
            ));
        }
    }
    out
}

fn replicas_agree(tables: &[RequestTable]) -> Vec<String> {
    let mut by_index: BTreeMap<u64, &RequestTable> = BTreeMap::new();
    let mut out = Vec::new();
    for t in tables {
        match by_index.get(&t.applied) {
            None => {
                by_index.insert(t.applied, t);
            }
            Some(first) if first.pairs != t.pairs => out.push(format!(
                "{} and {} both applied the log up to index {} but hold different request tables ({} and {} \
                 pairs)",
                first.node,
                t.node,
                t.applied,
                first.pairs.len(),
                t.pairs.len()
            )),
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use coffer::pb;
    use coffer_model::keys;
    use prost::Message;

    use super::*;
    use crate::history::Kind;
    use crate::history::Op;
    use crate::history::Reply;

    fn table(node: &str, applied: u64, records: u64, queued: u64, span: u64) -> RequestTable {
        let mut pairs = vec![(
            keys::REQUESTS_META.to_vec(),
            pb::RequestTableMeta {
                head: 0,
                tail: span,
                ..Default::default()
            }
            .encode_to_vec(),
        )];
        pairs.extend((0..records).map(|i| (keys::request(&format!("r{i}")), vec![])));
        pairs.extend((0..queued).map(|i| (keys::request_queue(i), vec![])));
        RequestTable {
            node: node.into(),
            applied,
            pairs,
        }
    }

    #[test]
    fn a_table_missing_a_record_or_differing_from_a_replica_at_the_same_index_is_caught() {
        assert!(tables_whole(&[table("a", 5, 2, 2, 2)]).is_empty());
        assert_eq!(tables_whole(&[table("a", 5, 1, 2, 2)]).len(), 1, "a record is missing");
        assert_eq!(
            tables_whole(&[table("a", 5, 2, 2, 3)]).len(),
            1,
            "the queue spans one more"
        );
        assert!(replicas_agree(&[table("a", 5, 2, 2, 2), table("b", 6, 3, 3, 3)]).is_empty());
        assert_eq!(
            replicas_agree(&[table("a", 5, 2, 2, 2), table("b", 5, 3, 3, 3)]).len(),
            1,
            "same index, different tables"
        );
    }

    #[test]
    fn a_client_told_other_than_the_record_is_caught() {
        let op = |outcome| Op {
            id: 0,
            client: "c".into(),
            node: "n".into(),
            object: "acme/a".into(),
            kind: Kind::Promote { version: 1, expect: 2 },
            request_id: "c.1".into(),
            attempts: 1,
            invoked_us: 0,
            completed_us: Some(10),
            outcome,
        };
        let with_record = |o: Op, outcome: pb::command_result::Outcome| {
            let mut h = History {
                ops: vec![o],
                ..Default::default()
            };
            let rec = pb::RequestRecord {
                result: Some(pb::CommandResult {
                    log_index: 7,
                    outcome: Some(outcome),
                    replayed: false,
                }),
                ..Default::default()
            };
            h.requests
                .insert_for_test(&crate::workload::logged_request_id("c.1"), rec);
            h
        };
        let applied = pb::command_result::Outcome::Ok(pb::CommandOk {
            version: 1,
            ..Default::default()
        });
        let refused = pb::command_result::Outcome::Error(pb::CommandError {
            code: pb::ErrorCode::CasFailed as i32,
            ..Default::default()
        });
        let told_ok = Outcome::Ok(Reply {
            version: 1,
            log_index: 7,
            ..Default::default()
        });
        assert!(check(&with_record(op(told_ok.clone()), applied.clone()), &[]).is_empty());
        // Seed 10: the promote was applied, and its client was told it failed its CAS.
        let v = check(&with_record(op(Outcome::Failed("Aborted".into())), applied), &[]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(check(
            &with_record(op(Outcome::Failed("Aborted".into())), refused.clone()),
            &[]
        )
        .is_empty());
        assert_eq!(check(&with_record(op(told_ok), refused), &[]).len(), 1);
    }
}
