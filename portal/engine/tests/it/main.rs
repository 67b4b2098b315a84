//! The engine's integration tests, in one binary so the AWS SDK links once.
//! Each test gets a real moto on a free port behind the sandbox gateway,
//! with AWS's waits and refusals on at a small time scale, and a real
//! SQLite file in a temporary folder; see [`common`].

mod common;

mod boundary;
mod change;
mod deploy;
mod drift;
mod faults;
mod iam_enforced;
mod idempotence;
mod launch_failures;
mod operator_policy;
mod orphans;
mod params_props;
mod preflight;
mod queue;
mod store;
mod strict;
mod throttling;
