//! openraft's async runtime: tokio, with election jitter drawn from a reseedable RNG.
//!
//! openraft draws randomized election timeouts from `AsyncRuntime::thread_rng()`. Tokio's
//! runtime answers with an OS-seeded `ThreadRng`, which makes a simulation run differ from the
//! next with the same seed. [`CofferRuntime`] is tokio in every other respect; its RNG is a
//! per-thread SplitMix64 stream seeded from the OS on first use, and a simulation (which runs
//! every simulated host on one thread) calls [`reseed_thread_rng`] with its seed first.
//! Election jitter needs spread, not secrecy, so a non-cryptographic generator is fine here.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use openraft::AsyncRuntime;
use openraft::OptionalSend;
use openraft_rt_tokio::TokioRuntime;
use rand::rngs::SmallRng;
use rand::SeedableRng;

thread_local! {
    static SEED: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Makes this thread's election-jitter stream start from `seed` (simulations only).
pub fn reseed_thread_rng(seed: u64) {
    SEED.with(|s| s.set(Some(seed)));
}

fn next_seed() -> u64 {
    SEED.with(|s| {
        let current = s.get().unwrap_or_else(|| {
            let mut b = [0u8; 8];
            // The OS RNG practically never fails; if it does, jitter still varies per process.
            if getrandom::getrandom(&mut b).is_err() {
                b = (std::process::id() as u64).to_le_bytes();
            }
            u64::from_le_bytes(b)
        });
        s.set(Some(splitmix64(current)));
        current
    })
}

/// SplitMix64: a bijective mixer, so consecutive states never collide.
pub fn splitmix64(x: u64) -> u64 {
    let z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Tokio with a reseedable election-jitter RNG (see the module docs).
#[derive(Debug)]
pub struct CofferRuntime {
    inner: TokioRuntime,
}

impl AsyncRuntime for CofferRuntime {
    type JoinError = <TokioRuntime as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = <TokioRuntime as AsyncRuntime>::Instant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = SmallRng;

    #[inline]
    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        TokioRuntime::spawn(future)
    }

    #[inline]
    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    #[inline]
    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        TokioRuntime::sleep_until(deadline)
    }

    #[inline]
    fn timeout<R, F: Future<Output = R> + OptionalSend>(duration: Duration, future: F) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    #[inline]
    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    #[inline]
    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    #[inline]
    fn thread_rng() -> Self::ThreadLocalRng {
        SmallRng::seed_from_u64(next_seed())
    }

    type Mpsc = <TokioRuntime as AsyncRuntime>::Mpsc;
    type Watch = <TokioRuntime as AsyncRuntime>::Watch;
    type Oneshot = <TokioRuntime as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::Mutex<T>;

    fn new(threads: usize) -> Self {
        Self {
            inner: TokioRuntime::new(threads),
        }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.inner.block_on(future)
    }

    fn spawn_blocking<F, T>(f: F) -> impl Future<Output = Result<T, std::io::Error>> + Send
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        TokioRuntime::spawn_blocking(f)
    }
}

#[cfg(test)]
mod tests {
    use rand::RngExt;

    use super::*;

    #[test]
    fn a_reseeded_thread_repeats_its_jitter() {
        let draw = || {
            (0..4)
                .map(|_| CofferRuntime::thread_rng().random_range(0..1000u64))
                .collect::<Vec<_>>()
        };
        reseed_thread_rng(7);
        let a = draw();
        reseed_thread_rng(7);
        assert_eq!(a, draw());
        reseed_thread_rng(8);
        assert_ne!(a, draw());
    }
}
