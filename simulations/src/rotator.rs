//! The simulation's rotators: the hook strategy's seam ([`coffer::rotation::hook::Rotators`]).
//! Secrets of the simulated workload rotate by `generate`, so no call reaches here; one that
//! did is refused, and the run fails its attempt like a rotator that cannot be reached.

use coffer::rotation::hook::HookCall;
use coffer::rotation::hook::HookError;
use coffer::rotation::hook::Rotators;

pub struct NoRotator;

#[async_trait::async_trait]
impl Rotators for NoRotator {
    async fn call(&self, url: &str, _call: &HookCall) -> Result<(), HookError> {
        Err(HookError::Unreachable {
            url: url.to_string(),
            problem: "no rotator in this simulation".into(),
        })
    }
}
