//! The engine: provisioning and teardown of a CloudPulse stack as durable jobs.
//!
//! A job is a DAG of steps, each an idempotent action with an idempotent undo,
//! whose state lives in SQLite so that a killed portal resumes without
//! duplicating anything. This crate also owns the portal's database: opening
//! it, migrating it, and the queries over deployments and jobs.
//!
//! It must not render anything or know about HTTP: the server crate turns its
//! results into pages, JSON and events.

/// A deployment's parameters and their rules, shared with the pages.
pub use cloudpulse_core::params;

pub mod aws;
pub mod drift;
pub mod error;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod inventory;
pub mod live;
pub mod orphans;
pub mod plan;
pub mod preflight;
pub mod runner;
pub mod steps;
pub mod store;

pub use runner::{
    Engine, EngineConfig, EngineError, JobEvent, Progress, DEFAULT_MAX_CONCURRENT_DEPLOYS,
};
pub use store::{Store, StoreError};
