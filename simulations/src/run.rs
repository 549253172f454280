//! One run: build the world from the seed, a safety phase with faults and the workload, a
//! liveness phase without faults, then the checkers.

use std::cell::Cell;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use coffer::pb;
use coffer_kv::bugs::Bug;
use coffer_raft::node::Role;
use sha2::Digest;

use crate::cluster;
use crate::cluster::Slot;
use crate::cluster::Storage;
use crate::faults;
use crate::faults::Fault;
use crate::faults::Hosts;
use crate::faults::Links;
use crate::faults::Scheduled;
use crate::history::History;
use crate::invariants;
use crate::invariants::Violation;
use crate::net::Leaks;
use crate::rng::SimRng;
use crate::shape::Shape;
use crate::shape::API_PORT;
use crate::workload;
use crate::workload::ClientPlan;
use crate::workload::Knowledge;

/// Simulated time a run may take before it counts as stuck.
const SIM_LIMIT: Duration = Duration::from_secs(900);
/// How long the healed cluster has to serve everywhere and finish rewrapping.
const LIVENESS_LIMIT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub seed: u64,
    pub bug: Option<Bug>,
    /// Length of the safety phase.
    pub safety: Option<Duration>,
    /// A pinned scenario instead of the seed's random faults.
    pub scenario: Option<crate::scenarios::Scenario>,
}

pub struct Report {
    pub seed: u64,
    pub shape: String,
    /// The fault schedule, one line per fault (printed when a run fails).
    pub schedule: Vec<String>,
    pub ops: usize,
    pub faults: usize,
    pub trace: String,
    pub violations: Vec<Violation>,
}

impl Report {
    pub fn line(&self) -> String {
        format!(
            "seed={} ops={} faults={} trace={} violations={}",
            self.seed,
            self.ops,
            self.faults,
            self.trace,
            self.violations.len()
        )
    }
}

fn apply_links(sim: &mut turmoil::Sim<'_>, prev: &Links, next: &Links) {
    for ((a, b), d) in &next.latency {
        if prev.latency.get(&(a.clone(), b.clone())) != Some(d) {
            sim.set_link_latency(a.as_str(), b.as_str(), *d);
        }
    }
    let debug = std::env::var_os("COFFER_SIM_DEBUG").is_some();
    for (from, to) in next.cut.difference(&prev.cut) {
        if debug {
            eprintln!("{:?} cut {from} -> {to}", sim.elapsed());
        }
        sim.partition_oneway(from.as_str(), to.as_str());
    }
    for (from, to) in prev.cut.difference(&next.cut) {
        if debug {
            eprintln!("{:?} repair {from} -> {to}", sim.elapsed());
        }
        sim.repair_oneway(from.as_str(), to.as_str());
    }
}

/// Where simulated time starts on the nodes' clocks (ms since the Unix epoch: 2027-01-15).
const SIM_EPOCH_MS: u64 = 1_800_000_000_000;

/// The nodes' wall clock: simulated time, so what they stamp (proposal times, which drive the
/// request table's expiry; token lifetimes) replays with the seed.
fn sim_clock() -> u64 {
    SIM_EPOCH_MS + turmoil::sim_elapsed().map_or(0, |d| d.as_millis() as u64)
}

fn leader_of(slots: &BTreeMap<u64, Slot>) -> Option<u64> {
    slots.iter().find_map(|(id, s)| {
        let r = s.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        (r.role_and_membership().0 == Role::Leader).then_some(*id)
    })
}

pub fn run(opts: &Options) -> Report {
    let seed = opts.seed;
    let rng = SimRng::new(seed);
    let shape = match &opts.scenario {
        Some(s) => s.shape(&rng),
        None => Shape::from_seed(&rng),
    };
    coffer_raft::runtime::reseed_thread_rng(seed);
    coffer_kv::bugs::set(opts.bug);
    coffer::time::set_thread_clock(Some(sim_clock));
    let safety = opts.safety.unwrap_or(Duration::from_secs(30));
    let safety = opts.scenario.map_or(safety, |s| safety.max(s.min_safety()));
    let schedule: Vec<Scheduled> = match &opts.scenario {
        Some(s) => s.faults(&shape),
        None => faults::schedule(&rng, &shape, safety),
    };

    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(SIM_LIMIT)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(1))
        .build();

    // Names first (DNS assigns addresses in lookup order), then hosts.
    let mut hosts = Hosts {
        all: Vec::new(),
        node_host: BTreeMap::new(),
        kms_host: Vec::new(),
    };
    for n in &shape.nodes {
        sim.lookup(n.name.as_str());
        hosts.all.push((n.name.clone(), n.region));
        hosts.node_host.insert(n.id, n.name.clone());
    }
    for r in 0..shape.regions.len() {
        let k = shape.kms_host(r);
        sim.lookup(k.as_str());
        hosts.all.push((k.clone(), r));
        hosts.kms_host.push(k);
    }
    let mut wl = rng.fork("workload");
    let mut clients = Vec::new();
    let n_secrets = wl.range(2, 4);
    let secrets: Vec<String> = (0..n_secrets).map(|i| format!("acme/s{i}")).collect();
    for r in 0..shape.regions.len() {
        for k in 0..wl.range(1, 2) as usize {
            let name = shape.client_host(r, k);
            sim.lookup(name.as_str());
            hosts.all.push((name.clone(), r));
            let nodes: Vec<_> = shape.nodes_in(r).collect();
            let node = wl.pick(&nodes);
            clients.push(ClientPlan {
                name,
                node: node.name.clone(),
                addr: cluster::addr(&sim, &node.name, API_PORT),
                secrets: secrets.clone(),
                rng: wl.fork(&format!("client-{r}-{k}")),
            });
        }
    }
    // Pinned readers, one per node, in the node's region: (host, node, address).
    let mut readers = Vec::new();
    if opts.scenario.is_some_and(|s| s.bounded_readers()) {
        for n in &shape.nodes {
            let name = format!("reader-{}", n.name);
            sim.lookup(name.as_str());
            hosts.all.push((name.clone(), n.region));
            readers.push((name, n.name.clone(), cluster::addr(&sim, &n.name, API_PORT)));
        }
    }

    // The rotation reader: PREVIOUS of a rotating secret, from any node, in bursts.
    let previous_reader = "rotation-reader".to_string();
    sim.lookup(previous_reader.as_str());
    hosts.all.push((previous_reader.clone(), 0));
    let reader_nodes: Vec<(String, String)> = shape
        .nodes
        .iter()
        .map(|n| (n.name.clone(), cluster::addr(&sim, &n.name, API_PORT)))
        .collect();

    // Watchers of the folder acme/, hopping between nodes (see crate::watcher).
    let watchers: Vec<String> = (0..crate::watcher::WATCHERS).map(|i| format!("watcher-{i}")).collect();
    for (i, w) in watchers.iter().enumerate() {
        sim.lookup(w.as_str());
        hosts.all.push((w.clone(), i % shape.regions.len()));
    }

    let history = Rc::new(RefCell::new(History::default()));
    let leaks = Arc::new(Leaks::default());
    // The owners' rotator the hook secret's calls reach (every node's writes in one log).
    let hooks = crate::rotator::HookSetup {
        rng: rng.fork("rotator"),
        nodes: reader_nodes.clone(),
        log: Default::default(),
        healed: Default::default(),
    };
    let mut storage: BTreeMap<String, Storage> = BTreeMap::new();
    let mut slots: BTreeMap<u64, Slot> = BTreeMap::new();
    for r in 0..shape.regions.len() {
        let region = shape.regions[r].clone();
        sim.host(shape.kms_host(r).as_str(), move || {
            crate::kms_host::serve(seed, region.clone())
        });
    }
    for n in &shape.nodes {
        let st = Storage {
            sm: coffer_raft::mem::MemSmBackend::with_simulated_disk(),
            ..Default::default()
        };
        let slot = Slot::default();
        cluster::add_node(
            &mut sim,
            &shape,
            n,
            st.clone(),
            slot.clone(),
            leaks.clone(),
            history.clone(),
            hooks.clone(),
        );
        storage.insert(n.name.clone(), st);
        slots.insert(n.id, slot);
    }

    // Setup: wait for the cluster, add learners; then the clients start.
    let started = Rc::new(Cell::new(false));
    let stop = Rc::new(Cell::new(false));
    let knowledge = Rc::new(RefCell::new(Knowledge::default()));
    {
        let first = cluster::addr(&sim, &shape.nodes[0].name, API_PORT);
        let learners: Vec<pb::NodeInfo> = shape
            .nodes
            .iter()
            .filter(|n| !n.voter)
            .map(|n| pb::NodeInfo {
                id: n.id,
                name: n.name.clone(),
                region: shape.regions[n.region].clone(),
                zone: String::new(),
                raft_addr: cluster::addr(&sim, &n.name, crate::shape::RAFT_PORT),
                api_addr: cluster::addr(&sim, &n.name, API_PORT),
            })
            .collect();
        let started = started.clone();
        sim.client("setup", async move {
            crate::liveness::setup(&first, learners).await?;
            started.set(true);
            Ok(())
        });
    }
    for plan in clients {
        let (h, k, s, go) = (history.clone(), knowledge.clone(), stop.clone(), started.clone());
        let name = plan.name.clone();
        sim.client(name.as_str(), async move {
            after_setup(&go).await;
            workload::run_client(plan, h, k, s).await
        });
    }
    for (name, node, addr) in readers {
        let (h, s, go, object) = (history.clone(), stop.clone(), started.clone(), secrets[0].clone());
        sim.client(name.clone().as_str(), async move {
            after_setup(&go).await;
            workload::run_bounded_reader(name, node, addr, object, h, s).await
        });
    }
    {
        let (h, s, go, r) = (
            history.clone(),
            stop.clone(),
            started.clone(),
            rng.fork("rotation-reader"),
        );
        let nodes = reader_nodes.clone();
        sim.client(previous_reader.as_str(), async move {
            after_setup(&go).await;
            workload::run_previous_reader(nodes, r, h, s).await
        });
    }
    for w in &watchers {
        let (h, s, go, r, nodes, name) = (
            history.clone(),
            stop.clone(),
            started.clone(),
            rng.fork(w),
            reader_nodes.clone(),
            w.clone(),
        );
        sim.client(w.as_str(), async move {
            after_setup(&go).await;
            crate::watcher::run_watcher(name, nodes, r, h, s).await
        });
    }
    // The drill operator: fences nodes when the schedule says so (see crate::driller).
    let orders: crate::driller::Orders = Default::default();
    {
        let (o, h, go, s) = (orders.clone(), history.clone(), started.clone(), stop.clone());
        sim.client(crate::driller::HOST, async move {
            after_setup(&go).await;
            crate::driller::run(o, h, s).await
        });
    }
    let mut links = Links::default();
    let base = faults::links(&shape, &hosts, &[]);
    apply_links(&mut sim, &links, &base);
    links = base;

    let mut failures: Vec<String> = Vec::new();
    // Every node's request table is read every SAMPLE_EVERY of simulated time (records expire).
    let mut next_sample = Duration::ZERO;
    let mut next_rotation_sample = Duration::ZERO;
    let mut sample = |sim: &turmoil::Sim<'_>| {
        let now = sim.elapsed();
        if now >= next_rotation_sample {
            next_rotation_sample = now + crate::rotation_log::SAMPLE_EVERY;
            let mut h = history.borrow_mut();
            for (name, st) in &storage {
                h.rotations.sample(name, &st.sm, now.as_micros() as u64);
            }
        }
        if now < next_sample {
            return;
        }
        next_sample = now + crate::request_log::SAMPLE_EVERY;
        let mut h = history.borrow_mut();
        for (name, st) in &storage {
            h.requests.sample(name, &st.sm, now.as_micros() as u64);
        }
    };
    // One step of simulated time; false once the simulation stopped (an error) or, when
    // `until_done`, once every client has finished.
    let mut step = |sim: &mut turmoil::Sim<'_>, failures: &mut Vec<String>, until_done: bool| -> bool {
        let r = sim.step();
        sample(sim);
        match r {
            Ok(done) => !(until_done && done),
            Err(e) => {
                failures.push(format!("simulation stopped: {e}"));
                false
            }
        }
    };

    // Wait for setup.
    while !started.get() && sim.elapsed() < SIM_LIMIT / 4 {
        if !step(&mut sim, &mut failures, false) {
            break;
        }
    }
    if !started.get() {
        failures.push("the cluster never formed (no leader answered within the setup time)".into());
    }

    // Safety phase: the workload under the fault schedule.
    let t0 = sim.elapsed();
    let mut active: Vec<(usize, Fault, Option<u64>)> = Vec::new();
    let mut crashed: Vec<(usize, String)> = Vec::new();
    let mut next = 0;
    while failures.is_empty() && sim.elapsed() < t0 + safety {
        let now = sim.elapsed() - t0;
        let mut changed = false;
        while next < schedule.len() && schedule[next].start <= now {
            let f = &schedule[next];
            match &f.fault {
                Fault::Crash(id) => {
                    let host = hosts.node_host[id].clone();
                    if !crashed.iter().any(|(_, h)| *h == host) {
                        sim.crash(host.as_str());
                        *slots[id].lock().unwrap_or_else(|e| e.into_inner()) = None;
                        crashed.push((next, host));
                    }
                }
                Fault::IsolateLeader => active.push((next, f.fault.clone(), leader_of(&slots))),
                Fault::DrillFence(id) => {
                    let node = shape
                        .nodes
                        .iter()
                        .find(|n| n.id == *id)
                        .map(|n| n.name.clone())
                        .unwrap_or_default();
                    orders.borrow_mut().push_back(crate::driller::Order {
                        addr: cluster::addr(&sim, &node, API_PORT),
                        node,
                        duration_ms: (f.length.as_millis() as u64).max(1_000),
                    });
                }
                Fault::IsolateLeaderRegion | Fault::LeaderRegionKmsDown => {
                    // Resolved now: the region of the node that leads at this moment.
                    let region = leader_of(&slots)
                        .and_then(|id| shape.nodes.iter().find(|n| n.id == id))
                        .map(|n| n.region)
                        .unwrap_or(0);
                    let fault = match f.fault {
                        Fault::IsolateLeaderRegion => Fault::IsolateRegion(region),
                        _ => Fault::KmsDown(region),
                    };
                    active.push((next, fault, None));
                }
                other => active.push((next, other.clone(), None)),
            }
            changed = true;
            next += 1;
        }
        let before = active.len() + crashed.len();
        active.retain(|(i, _, _)| schedule[*i].start + schedule[*i].length > now);
        let ended: Vec<String> = crashed
            .iter()
            .filter(|(i, _)| schedule[*i].start + schedule[*i].length <= now)
            .map(|(_, h)| h.clone())
            .collect();
        for h in &ended {
            sim.bounce(h.as_str());
        }
        crashed.retain(|(_, h)| !ended.contains(h));
        // A node whose disk is full reports no free space while the fault lasts.
        for n in &shape.nodes {
            let full = active.iter().any(|(_, f, _)| *f == Fault::DiskFull(n.id));
            if let Some(st) = storage.get(&n.name) {
                st.sm.set_free_disk_bytes(if full { 0 } else { u64::MAX });
            }
        }
        if changed || active.len() + crashed.len() != before {
            let want: Vec<(Fault, Option<u64>)> = active.iter().map(|(_, f, l)| (f.clone(), *l)).collect();
            let next_links = faults::links(&shape, &hosts, &want);
            apply_links(&mut sim, &links, &next_links);
            links = next_links;
        }
        if !step(&mut sim, &mut failures, false) {
            break;
        }
    }

    // Heal everything, let the clients finish their last operation.
    stop.set(true);
    hooks.healed.store(true, std::sync::atomic::Ordering::Relaxed);
    for st in storage.values() {
        st.sm.set_free_disk_bytes(u64::MAX);
    }
    for (_, h) in crashed.drain(..) {
        sim.bounce(h.as_str());
    }
    let base = faults::links(&shape, &hosts, &[]);
    apply_links(&mut sim, &links, &base);

    // Liveness phase: no faults; the cluster must serve everywhere and finish rewrapping.
    if failures.is_empty() {
        let targets: Vec<(String, String, String)> = shape
            .nodes
            .iter()
            .map(|n| {
                (
                    n.name.clone(),
                    shape.regions[n.region].clone(),
                    cluster::addr(&sim, &n.name, API_PORT),
                )
            })
            .collect();
        let secrets = secrets.clone();
        let h = history.clone();
        sim.client("checker", async move {
            crate::liveness::check(targets, secrets, h, LIVENESS_LIMIT).await;
            Ok(())
        });
        while step(&mut sim, &mut failures, true) {}
    }
    {
        // What every node holds at the end: its last request records, policies and tokens.
        let mut h = history.borrow_mut();
        let end = sim.elapsed().as_micros() as u64;
        h.rotations.hook_writes = std::mem::take(&mut hooks.log.lock().unwrap_or_else(|e| e.into_inner()).writes);
        if std::env::var_os("COFFER_SIM_DEBUG").is_some() {
            for w in &h.rotations.hook_writes {
                eprintln!("hook write: {w:?}");
            }
            for ((name, n), run) in &h.rotations.runs {
                eprintln!(
                    "run {n} of {name}: {:?} attempts {} error {:?}",
                    crate::rotation_log::steps(run),
                    run.attempts,
                    run.last_error
                );
            }
        }
        for (name, st) in &storage {
            h.requests.sample(name, &st.sm, end);
            h.rotations.sample(name, &st.sm, end);
            let view = coffer_raft::storage::SmBackend::view(&st.sm);
            let access = crate::history::FinalAccess {
                index: coffer_raft::state_machine::applied_index_in(&*view).unwrap_or(0),
                policies: coffer_model::access_records::policies(&*view)
                    .map(|ps| ps.into_iter().map(|p| p.name).collect())
                    .unwrap_or_default(),
                tokens: coffer_model::access_records::tokens(&*view)
                    .map(|ts| ts.into_iter().map(|t| (t.principal, t.revoked_at_ms > 0)).collect())
                    .unwrap_or_default(),
            };
            h.final_access.insert(name.clone(), access);
        }
    }

    let ops = history.borrow().ops.len();
    history.borrow_mut().liveness.extend(failures);
    let leaks_seen = leaks.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let dump = cluster::storage_dump(&storage);
    let tables = cluster::request_tables(&storage);
    if opts.scenario == Some(crate::scenarios::Scenario::RequestsExpire) && !cluster::some_request_expired(&tables) {
        history
            .borrow_mut()
            .liveness
            .push("no request record expired: the scenario did not exercise expiry".into());
    }
    let shreds = shape
        .nodes
        .iter()
        .filter_map(|n| {
            let raft = slots.get(&n.id)?.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
            let st = storage.get(&n.name)?;
            let shredding = raft.reader().shredding();
            Some(invariants::evidence::NodeShred {
                node: n.name.clone(),
                requested: shredding.requested(),
                through: shredding.through(),
                first_log_index: coffer_raft::storage::LogBackend::range(&st.log, 0, u64::MAX)
                    .ok()
                    .and_then(|entries| entries.first().map(|(i, _)| *i)),
            })
        })
        .collect();
    let h = history.borrow();
    let violations = invariants::check_all(&invariants::Evidence {
        history: &h,
        storage: dump,
        tables,
        leaks: leaks_seen,
        shreds,
        kept: cluster::version_sets(&storage),
        tokens: cluster::token_tables(&storage),
        audit_chains: shape
            .nodes
            .iter()
            .filter_map(|n| Some((n.id, n.name.clone(), storage.get(&n.name)?.audit.hashes())))
            .collect(),
        anchors: cluster::anchor_tables(&storage),
    });
    if let Ok(secret) = std::env::var("COFFER_SIM_DUMP") {
        for o in h.on(&secret) {
            let record = invariants::resolve::records_of(&h, o)
                .into_iter()
                .map(|(id, r)| format!("{id}: {}", invariants::resolve::describe(r)))
                .collect::<Vec<_>>()
                .join("; ");
            eprintln!("{}   [{record}]", o.line());
        }
        for (node, f) in &h.finals {
            eprintln!("final {node}: {:?}", f.get(&secret));
        }
    }
    let mut hasher = sha2::Sha256::new();
    for o in &h.ops {
        hasher.update(o.line().as_bytes());
    }
    hasher.update(format!("samples={}", h.samples.len()).as_bytes());
    for l in &h.liveness {
        hasher.update(l.as_bytes());
    }
    coffer_kv::bugs::set(None);
    coffer::time::set_thread_clock(None);
    Report {
        seed,
        shape: shape.describe(),
        schedule: schedule
            .iter()
            .map(|f| {
                format!(
                    "{:>6} ms for {:>5} ms: {:?}",
                    f.start.as_millis(),
                    f.length.as_millis(),
                    f.fault
                )
            })
            .collect(),
        ops,
        faults: schedule.len(),
        trace: hex::encode(&hasher.finalize()[..8]),
        violations,
    }
}

/// Returns once the setup has made the cluster ready for the workload (`go` set).
async fn after_setup(go: &Cell<bool>) {
    while !go.get() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
