//! Driving load: a closed loop (connections x requests in flight, each issuing its next
//! request when the last one answers) and an open loop (a fixed arrival rate, latency measured
//! from each request's intended start, so a stall is charged to every request it delayed:
//! coordinated-omission-safe). Latencies go into HDR histograms (microseconds, 3 significant
//! digits).

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

use crate::target::Conn;
use crate::target::Keyspace;
use crate::target::Workload;

/// Highest latency a histogram holds (longer ones are clamped to it): 60 s.
const MAX_LATENCY_US: u64 = 60_000_000;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// What one measured run saw.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// Requests that completed inside the measured window.
    pub ops: u64,
    /// Requests that failed inside the window (a run with errors is reported, never hidden).
    pub errors: u64,
    pub secs: f64,
    pub ops_per_sec: f64,
    pub latency_us: Latency,
    /// The first error message, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Open loop only: the rate asked for, and requests not sent because too many were
    /// outstanding (the system fell too far behind).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shed: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        Self {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// Timing of a run: a warm-up whose requests are not counted, then the measured window.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub warmup: Duration,
    pub measure: Duration,
}

/// A small fast PRNG for key choice (xorshift64*); the load generator needs spread, not
/// cryptographic quality.
struct Keys(u64);

impl Keys {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn pick(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

#[derive(Default)]
struct Tally {
    ops: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    /// Counts one answer: a success adds its latency to `h`, a failure keeps the first error.
    fn count(&mut self, h: &mut Histogram<u64>, r: Result<(), String>, latency: Duration) {
        match r {
            Ok(()) => {
                self.ops += 1;
                h.record(clamp_us(latency)).expect("clamped into bounds");
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

fn clamp_us(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, MAX_LATENCY_US)
}

/// Closed loop: `in_flight` request loops on each of `conns`, uniform random keys.
pub async fn closed_loop(conns: &[Conn], in_flight: usize, workload: Workload, ks: &Keyspace, w: Window) -> Outcome {
    let start = Instant::now() + Duration::from_millis(5);
    let measure_from = start + w.warmup;
    let end = measure_from + w.measure;
    let mut tasks = Vec::new();
    for (ci, conn) in conns.iter().enumerate() {
        for j in 0..in_flight {
            let mut conn = conn.clone();
            let ks = ks.clone();
            let seed = (ci * in_flight + j) as u64 + 1;
            tasks.push(tokio::spawn(async move {
                let mut keys = Keys::new(seed);
                let mut h = histogram();
                let mut t = Tally::default();
                tokio::time::sleep_until(start).await;
                loop {
                    let began = Instant::now();
                    if began >= end {
                        break;
                    }
                    let r = conn.call(workload, &ks, keys.pick(ks.names.len())).await;
                    let done = Instant::now();
                    if done < measure_from || done > end {
                        continue;
                    }
                    t.count(&mut h, r, done - began);
                }
                (h, t)
            }));
        }
    }
    let mut h = histogram();
    let mut total = Tally::default();
    for task in tasks {
        let (th, t) = task.await.expect("load task panicked");
        h.add(th).expect("same bounds");
        total.ops += t.ops;
        total.errors += t.errors;
        if total.first_error.is_none() {
            total.first_error = t.first_error;
        }
    }
    outcome(&h, total, w.measure, None, None)
}

/// Open loop: requests arrive at `rate` per second whatever the answers do, spread over
/// `conns`; each latency runs from the request's intended start. At most `max_outstanding`
/// requests wait at once; beyond that arrivals are shed and counted.
pub async fn open_loop(
    conns: &[Conn],
    rate: f64,
    max_outstanding: usize,
    workload: Workload,
    ks: &Keyspace,
    w: Window,
) -> Outcome {
    let start = Instant::now() + Duration::from_millis(5);
    let measure_from = start + w.warmup;
    let end = measure_from + w.measure;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let shared = Arc::new(Mutex::new((histogram(), Tally::default())));
    let outstanding = Arc::new(tokio::sync::Semaphore::new(max_outstanding));
    let mut keys = Keys::new(0xC0FFEE);
    let mut shed = 0u64;
    let mut k: u64 = 0;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let intended = start + interval.mul_f64(k as f64);
        if intended >= end {
            break;
        }
        tokio::time::sleep_until(intended).await;
        // Issue every arrival whose time has come (the timer wakes at millisecond granularity).
        let now = Instant::now();
        loop {
            let intended = start + interval.mul_f64(k as f64);
            if intended > now || intended >= end {
                break;
            }
            let counted = intended >= measure_from;
            match outstanding.clone().try_acquire_owned() {
                Ok(permit) => {
                    let mut conn = conns[k as usize % conns.len()].clone();
                    let ks = ks.clone();
                    let key = keys.pick(ks.names.len());
                    let shared = shared.clone();
                    tasks.spawn(async move {
                        let r = conn.call(workload, &ks, key).await;
                        let done = Instant::now();
                        drop(permit);
                        if !counted {
                            return;
                        }
                        let mut g = shared.lock().expect("tally lock");
                        let (h, t) = &mut *g;
                        t.count(h, r, done - intended);
                    });
                }
                Err(_) => shed += counted as u64,
            }
            k += 1;
        }
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let (h, t) = std::mem::replace(
        &mut *shared.lock().expect("tally lock"),
        (histogram(), Tally::default()),
    );
    outcome(&h, t, w.measure, Some(rate), Some(shed))
}

fn outcome(h: &Histogram<u64>, t: Tally, window: Duration, target_rate: Option<f64>, shed: Option<u64>) -> Outcome {
    let secs = window.as_secs_f64();
    Outcome {
        ops: t.ops,
        errors: t.errors,
        secs,
        ops_per_sec: t.ops as f64 / secs,
        latency_us: Latency::of(h),
        first_error: t.first_error,
        target_rate,
        shed,
    }
}

/// Writes every key of `ks` once (the preload), `parallel` at a time over `conns`.
pub async fn preload(conns: &[Conn], parallel: usize, ks: &Keyspace) -> anyhow::Result<()> {
    write_n(conns, parallel, ks, ks.names.len()).await
}

/// `n` writes, key `i % keys` for the `i`th, `parallel` at a time over `conns`; a write that
/// fails 5 times in a row ends it with an error.
pub async fn write_n(conns: &[Conn], parallel: usize, ks: &Keyspace, n: usize) -> anyhow::Result<()> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..parallel {
        let mut conn = conns[i % conns.len()].clone();
        let ks = ks.clone();
        let next = next.clone();
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok(());
                }
                let k = i % ks.names.len();
                let mut tries = 0;
                while let Err(e) = conn.call(Workload::Write, &ks, k).await {
                    tries += 1;
                    if tries >= 5 {
                        anyhow::bail!("preloading {}: {e}", ks.names[k]);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}
