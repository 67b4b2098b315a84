//! The instance service's integration tests, in one binary: the real binary
//! on a free port against an IMDSv2 emulator and moto; see [`common`].

mod common;

mod cloudwatch;
mod hostile;
mod service;
mod user_data;
