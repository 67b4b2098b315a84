//! The portal's integration tests, in one binary so the AWS SDK links once.
//! Each test starts the real `cloudpulse` binary on a free port with a fresh
//! database (and, where it needs one, the sandbox cloud) and talks to it over
//! HTTP, as a person or the CLI would; see [`common`].

mod common;

mod access;
mod api;
mod budget;
mod change;
mod crash;
mod dockerfile;
mod drift;
mod hostile;
mod portal;
mod preflight;
mod rest_answers;
mod restart;
mod telemetry_calls;
