//! Real time against the cluster's order, in O(n log n).
//!
//! The writes of one object are totally ordered by the log index where each took effect, and
//! each read names the state it saw (or, for a read that found nothing, a range of states). The
//! history is linearizable in that order if every write can be given a point inside its own
//! interval, the points increasing in log order, such that every read's interval meets the
//! span between the write before the state it saw and the write after it. All constraints are
//! lower bounds (a write after everything that began before it must follow) and upper bounds (a
//! write no later than the end of anything that must follow it), so the earliest points that
//! meet the lower bounds are the best for the upper ones: one greedy pass decides it.

/// An interval of simulated microseconds (an unknown completion is `u64::MAX`).
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

/// A read that saw one of the states `from..=to` (state `p` follows the first `p` writes).
#[derive(Debug, Clone, Copy)]
pub struct Read {
    pub span: Span,
    pub from: usize,
    pub to: usize,
}

/// Who set a bound: a write (by position) or a read (by position in the reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Write(usize),
    Read(usize),
}

/// Two operations real time and the log order cannot both satisfy: `first` must take effect
/// before `then` (by the log order), yet `first` began after `then` had completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub first: Who,
    pub then: Who,
    /// The write at which the two met (the point that would have to be both late and early).
    pub at_write: usize,
}

/// Checks `writes` (in log order) against `reads`; the first conflict found, if any.
pub fn check(writes: &[Span], reads: &[Read]) -> Result<(), Conflict> {
    let m = writes.len();
    // Lower and upper bounds on each write's point, and who set them.
    let mut lo: Vec<(u64, Who)> = writes
        .iter()
        .enumerate()
        .map(|(j, w)| (w.start, Who::Write(j)))
        .collect();
    let mut hi: Vec<(u64, Who)> = writes.iter().enumerate().map(|(j, w)| (w.end, Who::Write(j))).collect();
    for (r, read) in reads.iter().enumerate() {
        // The write that makes the first state it may have seen happened no later than its end.
        if read.from >= 1 && read.span.end < hi[read.from - 1].0 {
            hi[read.from - 1] = (read.span.end, Who::Read(r));
        }
        // The write after the last state it may have seen happened no earlier than its start.
        if read.to < m && read.span.start > lo[read.to].0 {
            lo[read.to] = (read.span.start, Who::Read(r));
        }
    }
    let mut point: u64 = 0;
    let mut set_by = Who::Write(0);
    for j in 0..m {
        if lo[j].0 >= point {
            point = lo[j].0;
            set_by = lo[j].1;
        }
        if point > hi[j].0 {
            return Err(Conflict {
                first: set_by,
                then: hi[j].1,
                at_write: j,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: u64, end: u64) -> Span {
        Span { start, end }
    }

    fn read(start: u64, end: u64, state: usize) -> Read {
        Read {
            span: span(start, end),
            from: state,
            to: state,
        }
    }

    #[test]
    fn concurrent_writes_may_take_effect_in_either_order() {
        // The second write in the log completed first: fine while they overlap.
        assert_eq!(check(&[span(0, 10), span(1, 9)], &[read(20, 30, 2)]), Ok(()));
    }

    #[test]
    fn a_write_cannot_take_effect_before_one_that_began_after_it_ended() {
        let c = check(&[span(20, 30), span(0, 10)], &[]).unwrap_err();
        assert_eq!((c.first, c.then), (Who::Write(0), Who::Write(1)));
    }

    #[test]
    fn a_read_that_missed_a_completed_write_is_caught() {
        // Write 1 completed at 20; a read that began at 21 saw only write 0.
        let c = check(&[span(0, 10), span(11, 20)], &[read(21, 30, 1)]).unwrap_err();
        assert_eq!((c.first, c.then), (Who::Read(0), Who::Write(1)));
    }

    #[test]
    fn a_read_cannot_see_a_write_that_began_after_it_ended() {
        let c = check(&[span(50, 60)], &[read(0, 10, 1)]).unwrap_err();
        assert_eq!((c.first, c.then), (Who::Write(0), Who::Read(0)));
    }

    #[test]
    fn reads_in_real_time_order_never_go_back() {
        // r0 saw write 1; r1 began after r0 ended and saw only write 0.
        let writes = [span(0, 100), span(0, 100)];
        assert!(check(&writes, &[read(10, 20, 2), read(30, 40, 1)]).is_err());
        assert_eq!(check(&writes, &[read(10, 20, 1), read(30, 40, 2)]), Ok(()));
    }

    #[test]
    fn an_unknown_completion_stretches_to_the_end() {
        assert_eq!(check(&[span(0, u64::MAX)], &[read(5, 6, 0), read(500, 600, 1)]), Ok(()));
    }

    #[test]
    fn a_read_of_a_range_of_states_fits_anywhere_in_it() {
        // Nothing found: any state before write 1 (states 0 and 1).
        let writes = [span(0, 10), span(100, 110)];
        let nothing = Read {
            span: span(50, 60),
            from: 0,
            to: 1,
        };
        assert_eq!(check(&writes, &[nothing]), Ok(()));
        let late = Read {
            span: span(200, 210),
            ..nothing
        };
        assert!(check(&writes, &[late]).is_err(), "began after write 1 completed");
    }
}
