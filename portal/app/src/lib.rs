//! The CloudPulse user interface: Leptos components, pages and server functions.
//!
//! This crate compiles twice: with `ssr` into the server, where pages render to
//! HTML and server functions run, and with `hydrate` into the browser's wasm
//! bundle, where the same components take over the server's HTML. It must never
//! depend on the AWS SDK, sqlx or tokio: it sees the portal only through the
//! plain types in [`model`] and, on the server, the [`backend::Backend`] trait
//! that the server crate implements.

pub mod charts;
pub mod live;
pub mod model;
pub mod pages;
pub mod params;
pub mod pricing;
pub mod shell;
pub mod text;

#[cfg(feature = "ssr")]
pub mod backend;

pub use shell::{shell, App};

/// Starts the islands of a server-rendered page (the browser's entry point
/// calls this). Living here, it also links every island of this crate into
/// the bundle.
#[cfg(feature = "hydrate")]
pub fn hydrate_islands() {
    leptos::mount::hydrate_islands();
}
