//! The engine limit: bare RocksDB durable redeems per second at several group
//! sizes, in each write shape (see `voucherd_load::engine_limit`). Run with
//! `cargo bench --bench engine`; `VOUCHERD_LIMIT_S` sets seconds per run (default 5).

use std::time::Duration;

fn main() {
    // `cargo test --all-targets` runs benches once in test mode: keep that short.
    let quick = std::env::args().any(|a| a == "--test" || a == "--list");
    let seconds: f64 = std::env::var("VOUCHERD_LIMIT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 0.2 } else { 5.0 });
    use voucherd_load::engine_limit::{measure_shape, WriteShape};
    println!("{:>6} {:>12} {:>14}", "group", "shape", "redeems/s");
    for group in [1, 4, 16, 64, 256, 1024] {
        // The shapes alternate within each group size, so the machine's
        // drift weighs on all of them alike.
        for shape in WriteShape::ALL {
            let dir = tempfile::tempdir().expect("temporary folder");
            let run = measure_shape(dir.path(), group, Duration::from_secs_f64(seconds), shape)
                .expect("RocksDB");
            println!(
                "{group:>6} {:>12} {:>14.0}",
                shape.name(),
                run.redeems_per_s()
            );
        }
    }
}
