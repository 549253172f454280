//! `bounded` reads are never staler than the bound they report: the bound is within what was
//! asked, and the replica had applied every write acknowledged more than that bound before
//! the read began.

use super::evidence::Violation;
use crate::history::History;
use crate::history::Kind;
use crate::history::Mode;

pub fn check(h: &History) -> Vec<Violation> {
    let acked: Vec<(u64, u64, usize)> = h
        .ops
        .iter()
        .filter(|o| o.kind.is_write())
        .filter_map(|o| Some((o.completed_us?, o.ok()?.log_index, o.id)))
        .filter(|(_, index, _)| *index > 0)
        .collect();
    let mut out = Vec::new();
    for o in &h.ops {
        let (
            Kind::Get {
                mode: Mode::Bounded(max),
            },
            Some(r),
        ) = (&o.kind, o.ok())
        else {
            continue;
        };
        if r.staleness_ms > *max {
            out.push(Violation::new(
                "bounded",
                format!(
                    "read #{} asked for {max} ms and was served with a bound of {} ms",
                    o.id, r.staleness_ms
                ),
            ));
        }
        let horizon = o.invoked_us.saturating_sub(r.staleness_ms * 1000);
        if let Some((at, index, w)) = acked
            .iter()
            .filter(|(at, index, _)| *at < horizon && *index > r.applied_index)
            .min_by_key(|(_, index, _)| *index)
        {
            out.push(Violation::new(
                "bounded",
                format!(
                    "read #{} from {} reported a {} ms bound at index {}, but write #{w} (index {index}) was \
                     acknowledged at {at} us, {} ms before the read began",
                    o.id,
                    r.served_by,
                    r.staleness_ms,
                    r.applied_index,
                    (o.invoked_us - at) / 1000
                ),
            ));
        }
    }
    out
}
