//! `valori`: the command-line entry point.

use std::io::Write;
use std::process::ExitCode;

const USAGE: &str = "\
usage: valori <command>

commands:
  golden    apply the golden workload and print its report and state hash
            (the same report on x86-64, aarch64, wasm32 and Cortex-M)
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
