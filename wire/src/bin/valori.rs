//! `valori`: the command-line entry point.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use valori_wire::config::ServeArgs;

/// Valori: a vector database whose state can be proven.
#[derive(Parser, Debug)]
#[command(name = "valori", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve REST (default 127.0.0.1:3000) and the Postgres protocol
    /// (default 127.0.0.1:5433) over the database in --data-dir (default
    /// ./valori_data) until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Apply the golden workload and print its report and state hash (the
    /// same report on x86-64, aarch64, wasm32 and Cortex-M).
    Golden,
    /// Check a data directory offline: every log frame and its recorded
    /// root, a full replay, every snapshot and the checkpoint, inclusion
    /// and consistency proofs; exits 1 and says what differs if anything
    /// does.
    Verify {
        /// The data directory.
        #[arg(value_name = "DATA_DIR")]
        dir: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Golden => golden(),
        Command::Verify { dir } => verify(&dir),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match args.resolve() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("valori serve: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log).unwrap_or_else(|e| {
        eprintln!("valori serve: log filter {:?}: {e}; using info", config.log);
        tracing_subscriber::EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("valori serve: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(valori_wire::server::serve(
        config,
        valori_wire::server::shutdown_signal(),
        |running| {
            // One line on stdout that scripts can wait for.
            println!(
                "valori listening: rest http://{} postgres postgres://{}",
                running.rest_addr, running.pg_addr
            );
            let _ = std::io::stdout().flush();
        },
    ));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("valori serve: {e}");
            ExitCode::FAILURE
        }
    }
}

fn golden() -> ExitCode {
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
