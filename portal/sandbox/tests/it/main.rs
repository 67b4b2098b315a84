//! The sandbox cloud's integration tests, in one binary so the AWS SDK links
//! once: moto, the gateway and the data plane of real instance processes, as
//! the portal uses them; see [`common`]. The scaling test, which measures
//! real CPU load, has a binary of its own (`tests/scaling.rs`).

mod common;

mod dataplane;
mod faithful;
mod gateway;
mod monitoring;
mod moto;
mod refresh;
mod strict;
mod zones;
