//! The sandbox: a local cloud that behaves like the parts of AWS CloudPulse uses.
//!
//! The control plane is moto in server mode on a loopback port, reached
//! through the ordinary AWS SDK with an endpoint override, so the portal's code
//! path is the same as against AWS. What moto lacks (running instances, health
//! checks, a load balancer, alarm evaluation) is emulated here.
//!
//! Nothing in this crate may reach a real AWS endpoint: every client it builds
//! has an explicit loopback endpoint and the sandbox's own test credentials.

pub mod dataplane;
pub mod faithful;
pub mod gateway;
pub mod iam;
pub mod moto;

pub use dataplane::{DataPlane, DataPlaneConfig, DataPlaneError, DataPlaneView};
pub use faithful::strict::{Strict, Strictness};
pub use faithful::{Faithful, FaithfulError, LaunchFailure, UnsafeRecord};
pub use gateway::{Disruption, Gateway, GatewayError, Latency};
pub use moto::{
    operator_sdk_config, publish_newer_image, sdk_config, MotoError, MotoServer, AMI_PARAMETER,
};
