//! The one source of randomness in a run: SplitMix64 streams derived from the seed.
//!
//! Every choice (shape, latencies, faults, workload) draws from a stream forked from the seed
//! by a label, so adding draws to one stream never shifts another.

#[derive(Debug, Clone)]
pub struct SimRng {
    state: u64,
}

impl SimRng {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// An independent stream for `label`.
    pub fn fork(&self, label: &str) -> SimRng {
        let mut h = self.state ^ 0x243f_6a88_85a3_08d3;
        for b in label.bytes() {
            h = mix(h ^ b as u64);
        }
        SimRng { state: mix(h) }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn mix(x: u64) -> u64 {
    coffer_raft::runtime::splitmix64(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forks_are_stable_and_independent() {
        let a: Vec<u64> = (0..3)
            .map({
                let mut r = SimRng::new(1).fork("faults");
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..3)
            .map({
                let mut r = SimRng::new(1).fork("faults");
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(
            SimRng::new(1).fork("faults").next_u64(),
            SimRng::new(1).fork("workload").next_u64()
        );
        assert_ne!(
            SimRng::new(1).fork("faults").next_u64(),
            SimRng::new(2).fork("faults").next_u64()
        );
    }
}
