//! CloudPulse's domain, shared by every room: what a deployment is, the
//! parameters a person chooses and the rules they obey, what AWS charges for
//! the stack and how its cost adds up, the kinds of resource it is made of
//! and the tags that mark them, and how numbers and times read on a page.
//!
//! Plain Rust on purpose: it compiles for the server and for the browser's
//! wasm bundle alike, so it must never depend on Leptos, the AWS SDK, sqlx or
//! tokio. The engine, the telemetry and the pages all read it; it reads none
//! of them.

#[macro_use]
mod text_enum;

pub mod change;
pub mod drift;
pub mod ids;
pub mod live;
pub mod model;
pub mod params;
pub mod pricing;
pub mod resource;
pub mod tags;
pub mod text;
