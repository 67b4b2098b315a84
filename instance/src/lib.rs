//! `cloudpulse-instance`: the service every EC2 instance of a deployment runs.
//!
//! It answers the load balancer's `/health`, serves a small dashboard and JSON
//! API about itself and its Auto Scaling group, learns its identity from
//! IMDSv2 and publishes metrics to CloudWatch. It ships as a static binary and
//! must never let a slow AWS call slow down a health check: `/health` touches
//! neither AWS nor IMDS, AWS answers are cached and every call is bounded.

pub mod chaos;
pub mod config;
pub mod dashboard;
pub mod group;
pub mod host;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod traffic;
pub mod user_data;

mod application;

pub use application::Application;
