//! The tags CloudPulse puts on every AWS resource it makes. The engine writes
//! them, the orphan scan and the teardown's verification search by them, the
//! operator policy's conditions name them, and the sandbox's data plane finds
//! a deployment's group by them: one definition for all.

/// Which deployment made the resource (its id).
pub const DEPLOYMENT: &str = "cloudpulse:deployment";
/// Which step made the resource (the step's key, e.g. `nat_gateway:a`).
pub const STEP: &str = "cloudpulse:step";
