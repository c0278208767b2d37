//! Rebuilds when a migration changes: `refinery::embed_migrations!` reads
//! `sql/` at compile time, which Cargo does not track by itself.
fn main() {
    println!("cargo:rerun-if-changed=sql");
}
