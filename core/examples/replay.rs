//! Replays a trace file and prints every output as one JSON line.
//!
//! `cargo run -p sockline-core --example replay -- TRACE.json`

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: replay TRACE.json");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("replay: cannot read {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let trace = match sockline_core::Trace::from_json(&text) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("replay: {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = sockline_core::replay(&trace, |line| {
        let _ = writeln!(out, "{line}");
    });
    let _ = out.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("replay: {path}: {e}");
            ExitCode::from(2)
        }
    }
}
