//! A fenced node serves no client: no operation sent to a node after a drill's fence on it was
//! acknowledged, and answered before the fence's deadline, succeeded. (The fence is raised when
//! the node takes the call, at or after it was sent; its deadline is the duration after that,
//! so it stands at least from the acknowledgement to `sent + duration`.) That every fence ends
//! by itself is a liveness check: the driller never lifts one, and every node must serve at
//! the end (`crate::liveness`).

use super::evidence::Violation;
use crate::history::History;

pub fn check(h: &History) -> Vec<Violation> {
    let mut out = vec![];
    for d in &h.drills {
        let Some(from) = d.acked_us else { continue };
        let until = d.sent_us + d.duration_ms * 1000;
        for op in h.ops.iter().filter(|o| o.node == d.node && o.ok().is_some()) {
            let Some(done) = op.completed_us else { continue };
            if op.invoked_us >= from && done <= until {
                out.push(Violation::new(
                    "fenced_refuses",
                    format!(
                        "{} served {} while fenced (fence acknowledged at {from} us, standing until at least {until} us)",
                        d.node,
                        op.line()
                    ),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::DrillRecord;
    use crate::history::Kind;
    use crate::history::Op;
    use crate::history::Outcome;
    use crate::history::Reply;

    fn op(node: &str, at: u64, ok: bool) -> Op {
        Op {
            id: 0,
            client: "c".into(),
            node: node.into(),
            object: "acme/s0".into(),
            kind: Kind::Put { value: 1 },
            request_id: "r".into(),
            attempts: 1,
            invoked_us: at,
            completed_us: Some(at + 10),
            outcome: if ok {
                Outcome::Ok(Reply::default())
            } else {
                Outcome::Unknown("Unavailable: drill".into())
            },
        }
    }

    #[test]
    fn a_success_inside_the_fence_is_a_violation_and_around_it_is_not() {
        let mut h = History::default();
        h.drills.push(DrillRecord {
            node: "n1".into(),
            sent_us: 1_000,
            acked_us: Some(1_100),
            duration_ms: 2,
        });
        h.ops = vec![
            op("n1", 1_050, true),  // sent before the acknowledgement
            op("n1", 1_200, false), // refused
            op("n2", 1_200, true),  // another node
            op("n1", 2_995, true),  // answered after the deadline
        ];
        assert!(check(&h).is_empty(), "{:?}", check(&h));
        h.ops.push(op("n1", 1_500, true));
        assert_eq!(check(&h).len(), 1);
    }
}
