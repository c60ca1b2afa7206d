//! `valori`: the command-line entry point.

use std::io::Write;
use std::process::ExitCode;

const USAGE: &str = "\
usage: valori <command>

commands:
  golden    apply the golden workload and print its report and state hash
            (the same report on x86-64, aarch64, wasm32 and Cortex-M)
  verify DATA_DIR
            check a data directory offline: every log frame and its
            recorded root, a full replay, every snapshot and the
            checkpoint, inclusion and consistency proofs; exits 1 and
            says what differs if anything does
  help      print this message
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("golden") => {
            let mut report = String::new();
            if valori_core::golden::run(&mut report).is_err() {
                eprintln!("valori: could not format the golden report");
                return ExitCode::FAILURE;
            }
            let mut out = std::io::stdout().lock();
            if out.write_all(report.as_bytes()).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Some("verify") => {
            let Some(dir) = args.get(1) else {
                eprintln!("valori verify: missing DATA_DIR\n\n{USAGE}");
                return ExitCode::from(2);
            };
            verify(std::path::Path::new(dir))
        }
        None | Some("help" | "--help" | "-h") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("valori: unknown command {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn verify(dir: &std::path::Path) -> ExitCode {
    if !dir.is_dir() {
        eprintln!("valori verify: {} is not a directory", dir.display());
        return ExitCode::from(2);
    }
    let report = valori_engine::verify::verify_dir(&valori_engine::storage::FsStorage, dir);
    for finding in &report.findings {
        println!("{finding}");
    }
    match (report.state_hash, report.log_root) {
        (Some(state), Some(root)) => {
            println!(
                "events {}\nlog_root {root}\nstate_hash {state}",
                report.events
            );
        }
        _ => println!("events {}", report.events),
    }
    if report.is_ok() {
        println!("verified: no differences");
        ExitCode::SUCCESS
    } else {
        let bad = report.findings.iter().filter(|f| !f.ok).count();
        println!("FAILED: {bad} difference(s)");
        ExitCode::FAILURE
    }
}
