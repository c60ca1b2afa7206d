//! `valori-golden`: applies the golden workload and prints its report. Built
//! from the deterministic core alone, so that the aarch64 cross build stays
//! small; `valori golden` prints the same report.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut report = String::new();
    if valori_core::golden::run(&mut report).is_err() {
        eprintln!("valori-golden: could not format the report");
        return ExitCode::FAILURE;
    }
    match std::io::stdout().lock().write_all(report.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
