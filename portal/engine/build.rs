//! `sqlx::migrate!` embeds the migrations at compile time but does not tell
//! cargo to watch the folder, so a new migration file would otherwise be
//! missed until something else made the engine recompile.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
