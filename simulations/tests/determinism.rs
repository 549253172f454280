//! One seed, run twice (each run on a fresh thread, as a sweep would), gives one trace hash,
//! and the trace covers real work.

use coffer_simulations::run;

fn trace(seed: u64) -> run::Report {
    std::thread::spawn(move || {
        run::run(&run::Options {
            seed,
            safety: Some(std::time::Duration::from_secs(10)),
            ..Default::default()
        })
    })
    .join()
    .expect("the run panicked")
}

#[test]
fn one_seed_gives_one_trace() {
    let a = trace(7);
    let b = trace(7);
    assert!(a.ops >= 15, "the workload ran ({} ops)", a.ops);
    assert_eq!(
        a.trace,
        b.trace,
        "seed 7 ran twice with different traces:\n{}\n{}",
        a.line(),
        b.line()
    );
    assert_eq!(a.ops, b.ops);
    assert!(a.violations.is_empty(), "seed 7: {:?}", a.violations);
    let c = trace(8);
    assert_ne!(a.trace, c.trace, "another seed gives another trace");
}
