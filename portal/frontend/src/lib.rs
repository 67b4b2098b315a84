#![recursion_limit = "256"]
//! The browser entry point of the portal.
//!
//! The server renders every page; this wasm module brings the interactive
//! parts of a page (its islands) to life and leaves the rest as the server
//! sent it. It holds no logic of its own and must stay free of server-only
//! crates: anything it pulls in ships to every browser. On any other target
//! it is empty, so a `--workspace` build of the server stays correct.

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    cloudpulse_app::hydrate_islands();
}
