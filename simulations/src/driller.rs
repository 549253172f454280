//! The drill operator of a simulation: raises fences on nodes through their real admin RPC
//! (`Cluster.DrillFault`, root token), as `coffer drill` does, when the fault schedule says so.
//! It never lifts one: every fence must end by itself at its deadline. Its host is in no
//! region, so network faults never cut it off (an operator's out-of-band access).

use std::cell::Cell;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use coffer::pb;
use coffer::pb::cluster_client::ClusterClient;

use crate::history::DrillRecord;
use crate::history::History;

/// The host name of the driller.
pub const HOST: &str = "driller";

/// A fence to raise: on which node (name, API address) and for how long.
#[derive(Debug, Clone)]
pub struct Order {
    pub node: String,
    pub addr: String,
    pub duration_ms: u64,
}

pub type Orders = Rc<RefCell<VecDeque<Order>>>;

fn now_us() -> u64 {
    turmoil::sim_elapsed().unwrap_or_default().as_micros() as u64
}

/// Carries out orders as they come, one at a time, recording each, until `stop` (the end of
/// the safety phase) with none left.
pub async fn run(orders: Orders, history: Rc<RefCell<History>>, stop: Rc<Cell<bool>>) -> turmoil::Result {
    let mut n = 0;
    loop {
        let next = orders.borrow_mut().pop_front();
        let Some(o) = next else {
            if stop.get() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        n += 1;
        let req = pb::DrillFaultRequest {
            drill_id: format!("sim-{n}"),
            kind: pb::DrillFaultKind::Fence as i32,
            duration_ms: o.duration_ms,
            ..Default::default()
        };
        let sent_us = now_us();
        let acked = match crate::net::channel(&o.addr, None) {
            Ok(ch) => ClusterClient::new(ch)
                .drill_fault(crate::workload::request(req))
                .await
                .is_ok(),
            Err(_) => false,
        };
        history.borrow_mut().drills.push(DrillRecord {
            node: o.node,
            sent_us,
            acked_us: acked.then(now_us),
            duration_ms: o.duration_ms,
        });
    }
}
