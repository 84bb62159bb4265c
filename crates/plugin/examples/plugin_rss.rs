//! Memory check of the plugin boundary: loads a plugin library, runs one of its Labels -> Labels
//! nodes on many windows in one process and prints the resident set size as it goes.
//!
//! ```text
//! cargo build --release -p flow-majority-filter
//! cargo run --release -p flow-plugin --example plugin_rss -- \
//!     target/release/libflow_majority_filter.so majority-filter 1000 256
//! ```
//!
//! Arguments: library, kind (default `majority-filter`), runs (default 1000), window side in
//! pixels (default 256). Every run builds the node, lends a fresh window, receives the output and
//! drops both, as the engine does once per node per run. Valgrind works too:
//! `valgrind --leak-check=full target/release/examples/plugin_rss LIB majority-filter 200 64`.

use std::path::PathBuf;
use std::sync::Arc;

use flow_core::{Grid, Inputs, Labels, Params, Registry, RunContext, Value};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(lib) = args.next().map(PathBuf::from) else {
        eprintln!("usage: plugin_rss LIBRARY [KIND] [RUNS] [SIDE]");
        std::process::exit(2);
    };
    let kind = args.next().unwrap_or_else(|| "majority-filter".into());
    let runs: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let side: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(256);

    let mut registry = Registry::new();
    if let Err(e) = flow_plugin::load_into(&mut registry, &[lib]) {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code().code());
    }
    let Some(kind) = registry.get(&kind).cloned() else {
        eprintln!("error: the library has no kind `{kind}`");
        std::process::exit(2);
    };
    let mut params = Params::new();
    flow_core::schema::apply_defaults(&kind.params(), &mut params);
    let ctx = RunContext::new("rss", "/tmp".into(), "/tmp".into(), "/tmp".into());

    let window = |i: usize| {
        let data = flow_plugin::ndarray::Array2::from_shape_fn((side, side), |(y, x)| {
            let v = (x / 8 + y / 8 + i) % 5;
            // Speckle and some nodata.
            if (x * 31 + y * 17 + i).is_multiple_of(23) {
                65535
            } else if (x * 7 + y * 13) % 11 == 0 {
                ((v + 1) % 5) as u16
            } else {
                v as u16
            }
        });
        Labels {
            data,
            nodata: 65535,
            classes: vec![],
            grid: Grid::north_up("EPSG:32618", 0.0, 0.0, 10.0, side, side),
        }
    };

    let start = rss_kib();
    println!(
        "runs={runs} window={side}x{side} (u16: {} KiB in, {} KiB out per run)",
        side * side * 2 / 1024,
        side * side * 2 / 1024
    );
    println!("VmRSS at start: {start} KiB");
    let t0 = std::time::Instant::now();
    let step = (runs / 10).max(1);
    for i in 0..runs {
        let node = kind.build(&params).unwrap_or_else(|e| panic!("build: {e}"));
        let inputs = Inputs::new([("input".to_string(), Arc::new(Value::Labels(window(i))))]);
        match node.run(&ctx, &inputs) {
            Ok(Value::Labels(out)) => assert_eq!(out.data.dim(), (side, side)),
            Ok(other) => panic!("unexpected output {:?}", other.value_type()),
            Err(e) => panic!("run: {e}"),
        }
        if (i + 1) % step == 0 {
            println!("VmRSS after {:>6} runs: {} KiB", i + 1, rss_kib());
        }
    }
    println!(
        "VmRSS at end: {} KiB (start {start} KiB); {:.2} ms per run",
        rss_kib(),
        t0.elapsed().as_secs_f64() * 1000.0 / runs.max(1) as f64
    );
}
