//! Prints what a CloudWatch endpoint (the emulator, in the bundled example)
//! stored in a namespace: one line per series, with its points.
//!
//! Usage: `cargo run --example read_back -- ENDPOINT NAMESPACE`

#[path = "../tests/e2e/readback.rs"]
mod readback;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, namespace] = args.as_slice() else {
        eprintln!("usage: read_back ENDPOINT NAMESPACE");
        std::process::exit(2);
    };
    let stored = readback::stored(endpoint, namespace).await;
    if stored.is_empty() {
        println!("Namespace {namespace:?} holds no metrics.");
        return;
    }
    println!("Stored in namespace {namespace:?}:\n");
    println!("{:<19} {:<32} {:>6} {:>8}  unit", "METRIC", "DIMENSIONS", "VALUE", "POINTS");
    for (series, s) in &stored {
        let dims: Vec<String> = series.dimensions.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let dims = if dims.is_empty() { "(none)".to_string() } else { dims.join(",") };
        println!(
            "{:<19} {:<32} {:>6} {:>8}  {}",
            series.metric,
            dims,
            s.sum,
            s.samples,
            s.units.join(",")
        );
    }
}
