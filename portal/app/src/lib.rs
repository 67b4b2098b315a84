//! The CloudPulse user interface: Leptos components, pages and server functions.
//!
//! This crate compiles twice: with `ssr` into the server, where pages render to
//! HTML and server functions run, and with `hydrate` into the browser's wasm
//! bundle, where the same components take over the server's HTML. It must never
//! depend on the AWS SDK, sqlx or tokio: it sees the portal only through the
//! plain types of `cloudpulse-core` (re-exported here as [`model`],
//! [`params`], [`pricing`], [`live`] and [`text`]) and, on the server, the
//! [`backend::Backend`] trait that the server crate implements.

#[cfg(all(feature = "ssr", feature = "hydrate"))]
compile_error!(
    "cloudpulse-app was built with both `ssr` and `hydrate`: the server's pages would \
     run browser code and panic. Build the bundle on its own \
     (`cargo build -p cloudpulse-frontend --target wasm32-unknown-unknown`)."
);

pub mod charts;
pub mod pages;
pub mod shell;

pub use cloudpulse_core::{change, drift, ids, live, model, params, pricing, text};

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
