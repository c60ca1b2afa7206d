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

// Parsed once at start: the size of the serve settings costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Serve REST (default 127.0.0.1:3000) and the Postgres protocol
    /// (default 127.0.0.1:5433) over the database in --data-dir (default
    /// ./valori_data) until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Cluster commands.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Apply the golden workload and print its report and state hash (the
    /// same report on x86-64, aarch64, wasm32 and Cortex-M).
    Golden,
    /// Check a data directory offline (every log frame and its recorded
    /// root, a full replay, every snapshot and the checkpoint with their
    /// state and index hashes, inclusion and consistency proofs), or a
    /// live server with --url (its head consistent with a trusted head,
    /// every event checked by inclusion and replayed, the state and index
    /// hashes it claims and its newest snapshot compared with the replay);
    /// exits 1 and names each claim that fails.
    Verify {
        /// The data directory.
        #[arg(
            value_name = "DATA_DIR",
            required_unless_present = "url",
            conflicts_with = "url"
        )]
        dir: Option<std::path::PathBuf>,
        /// A running server, e.g. http://127.0.0.1:3000.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// API key for --url (read role suffices).
        #[arg(
            long,
            env = "VALORI_KEY",
            hide_env_values = true,
            value_name = "KEY",
            requires = "url"
        )]
        key: Option<String>,
        /// Position of the event given with --event.
        #[arg(long, value_name = "N", requires = "event")]
        seq: Option<u64>,
        /// The event's canonical encoding in hex, as the write's client
        /// recorded it (or `/v1/proof/event/N` served it when it was made).
        #[arg(long, value_name = "HEX", requires = "seq")]
        event: Option<String>,
        /// Root (64 hex digits) of a tree head already held, e.g. printed
        /// by an earlier `verify --url`: the server's log must extend it.
        #[arg(long, value_name = "HEX", requires_all = ["url", "trusted_size"])]
        trusted_root: Option<String>,
        /// Log size of the trusted head given with --trusted-root.
        #[arg(long, value_name = "N", requires = "trusted_root")]
        trusted_size: Option<u64>,
        /// Most bytes --url may download in all.
        #[arg(long, value_name = "BYTES", requires = "url", default_value_t = valori_wire::audit::AUDIT_DOWNLOAD_BYTES_MAX)]
        download_bytes_max: u64,
        /// Most events --url may replay.
        #[arg(long, value_name = "N", requires = "url", default_value_t = valori_wire::audit::AUDIT_EVENTS_MAX)]
        events_max: u64,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Print each node's role, term, commit and applied index, lag, and
    /// event count, state hash and log root at its applied index; exits 1
    /// if a node cannot be reached or reports itself diverged.
    Status {
        /// A node's REST address, e.g. http://127.0.0.1:3000; repeat for
        /// more nodes.
        #[arg(long, value_name = "URL", required = true)]
        url: Vec<String>,
        /// API key (read role suffices).
        #[arg(long, env = "VALORI_KEY", hide_env_values = true, value_name = "KEY")]
        key: Option<String>,
    },
    /// Make learner ID a voter (openraft's joint consensus), through the
    /// leader at --url; prints the voters and learners after the change.
    /// Exits 1 if the change is refused: --url is not the leader (the
    /// leader's address is named), ID is not a member, the server is not a
    /// node of a cluster, or it cannot be reached.
    Promote(MembershipArgs),
    /// Remove node ID from the cluster (a voter is demoted first, by joint
    /// consensus), through the leader at --url; prints the voters and
    /// learners after the change. Exits 1 as `promote` does.
    Remove(MembershipArgs),
}

/// What a membership change names: the node and the leader to ask.
#[derive(clap::Args, Debug)]
struct MembershipArgs {
    /// The node's id in the cluster.
    #[arg(value_name = "ID")]
    id: u64,
    /// The leader's REST address, e.g. http://127.0.0.1:3000.
    #[arg(long, value_name = "URL")]
    url: String,
    /// API key (write role).
    #[arg(long, env = "VALORI_KEY", hide_env_values = true, value_name = "KEY")]
    key: Option<String>,
}

/// A membership change of `valori cluster`.
#[derive(Clone, Copy, Debug)]
enum Change {
    Promote,
    Remove,
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
        Command::Serve(args) => {
            // Large collections' rows and graphs on huge pages; before any
            // thread starts.
            valori_engine::huge_pages::restart_with_huge_pages();
            serve(args)
        }
        Command::Golden => golden(),
        Command::Cluster(ClusterCommand::Status { url, key }) => {
            cluster_status(&url, key.as_deref())
        }
        Command::Cluster(ClusterCommand::Promote(args)) => cluster_change(Change::Promote, &args),
        Command::Cluster(ClusterCommand::Remove(args)) => cluster_change(Change::Remove, &args),
        Command::Verify {
            dir,
            url,
            key,
            seq,
            event,
            trusted_root,
            trusted_size,
            download_bytes_max,
            events_max,
        } => match (dir, url) {
            (Some(dir), _) => verify(&dir),
            (None, Some(url)) => {
                let trusted = match trusted_root.zip(trusted_size) {
                    Some((root, size)) => match valori_core::hash::Hash32::from_hex(root.trim()) {
                        Some(root) => Some(valori_wire::audit::TrustedHead { size, root }),
                        None => {
                            eprintln!("valori verify: --trusted-root is not 64 hex digits");
                            return ExitCode::from(2);
                        }
                    },
                    None => None,
                };
                let limits = valori_wire::audit::AuditLimits {
                    download_bytes_max,
                    events_max,
                };
                verify_live(url, key, seq.zip(event), trusted, limits)
            }
            (None, None) => ExitCode::from(2),
        },
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
    // The signal handlers are installed now, before the server says it
    // is listening.
    let shutdown = {
        let _runtime = runtime.enter();
        valori_wire::server::shutdown_signal()
    };
    let result = runtime.block_on(valori_wire::server::serve(config, shutdown, |running| {
        // One line on stdout that scripts can wait for.
        println!(
            "valori listening: rest http://{} postgres postgres://{}",
            running.rest_addr, running.pg_addr
        );
        if let Some(node) = &running.cluster {
            println!(
                "valori cluster: node {} at {}",
                node.id, node.member.cluster_addr
            );
        }
        let _ = std::io::stdout().flush();
        // A second line for Flight; scripts that read only the first
        // may have closed stdout by now, which is not an error.
        let _ = writeln!(
            std::io::stdout(),
            "valori flight: grpc://{}",
            running.flight_addr
        );
        let _ = std::io::stdout().flush();
    }));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("valori serve: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The answer of the node at `url` to `GET /v1/cluster/status`.
fn node_status(url: &str, key: Option<&str>) -> Result<serde_json::Value, String> {
    let answer = valori_wire::client::parse_url(url).and_then(|(addr, prefix)| {
        valori_wire::client::request(
            &addr,
            "GET",
            &format!("{prefix}/v1/cluster/status"),
            key,
            None,
        )
    });
    let answer = answer.map_err(|e| e.to_string())?;
    if answer.status == 200 {
        answer.json()
    } else {
        Err(format!("HTTP {}: {}", answer.status, answer.text()))
    }
}

fn cluster_status(urls: &[String], key: Option<&str>) -> ExitCode {
    let mut ok = true;
    println!(
        "{:<28} {:>4} {:<10} {:>5} {:>8} {:>8} {:>5} {:>8}  {:<64}  log_root",
        "url", "node", "role", "term", "commit", "applied", "lag", "events", "state_hash"
    );
    for url in urls {
        let status = match node_status(url, key) {
            Ok(v) => v,
            Err(e) => {
                println!("{url:<28} unreachable: {e}");
                ok = false;
                continue;
            }
        };
        let field = |name: &str| match &status[name] {
            serde_json::Value::Null => "-".to_owned(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        println!(
            "{url:<28} {:>4} {:<10} {:>5} {:>8} {:>8} {:>5} {:>8}  {:<64}  {}",
            field("node_id"),
            field("role"),
            field("term"),
            field("commit_index"),
            field("applied_index"),
            field("lag"),
            field("events"),
            field("state_hash"),
            field("log_root"),
        );
        if !status["diverged"].is_null() {
            println!("{url:<28} DIVERGED: {}", field("diverged"));
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Asks the node at `args.url` for `change` of node `args.id` (`POST
/// /v1/cluster/nodes/ID/promote` or `DELETE /v1/cluster/nodes/ID`). The
/// node's own refusal is printed as it gives it (it names the leader, the
/// members or the missing cluster); when it is not the leader and knows
/// one, the command to run against the leader follows.
fn cluster_change(change: Change, args: &MembershipArgs) -> ExitCode {
    let MembershipArgs { id, url, key } = args;
    let key = key.as_deref();
    let (verb, method, route) = match change {
        Change::Promote => ("promote", "POST", format!("/v1/cluster/nodes/{id}/promote")),
        Change::Remove => ("remove", "DELETE", format!("/v1/cluster/nodes/{id}")),
    };
    let (addr, prefix) = match valori_wire::client::parse_url(url) {
        Ok(parts) => parts,
        Err(e) => {
            eprintln!("valori cluster {verb}: {e}");
            return ExitCode::from(2);
        }
    };
    let answer =
        match valori_wire::client::request(&addr, method, &format!("{prefix}{route}"), key, None) {
            Ok(answer) => answer,
            Err(e) => {
                eprintln!("valori cluster {verb} {id}: cannot reach {url}: {e}");
                return ExitCode::FAILURE;
            }
        };
    let status = || node_status(url, key).ok();
    if answer.status != 200 {
        let message = answer
            .json()
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| answer.text());
        eprintln!(
            "valori cluster {verb} {id}: {url} refused (HTTP {}): {message}",
            answer.status
        );
        if answer.status == 503
            && let Some(s) = status()
            && s["role"] != "leader"
            && let Some(leader) = s["leader_rest_addr"].as_str()
        {
            eprintln!(
                "the leader is node {} at http://{leader}: valori cluster {verb} {id} --url http://{leader}",
                s["leader"]
            );
        }
        return ExitCode::FAILURE;
    }
    let ids = |s: &serde_json::Value, field: &str| {
        let ids: Vec<String> = s[field]
            .as_array()
            .map(|a| a.iter().map(|v| v.to_string()).collect())
            .unwrap_or_default();
        if ids.is_empty() {
            "none".to_owned()
        } else {
            ids.join(", ")
        }
    };
    let done = match change {
        Change::Promote => format!("node {id} is a voter"),
        Change::Remove => format!("node {id} is removed"),
    };
    match status() {
        Some(s) => println!(
            "{done}; voters: {}; learners: {}",
            ids(&s, "voters"),
            ids(&s, "learners")
        ),
        None => println!("{done}"),
    }
    ExitCode::SUCCESS
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

fn verify_live(
    url: String,
    key: Option<String>,
    event: Option<(u64, String)>,
    trusted: Option<valori_wire::audit::TrustedHead>,
    limits: valori_wire::audit::AuditLimits,
) -> ExitCode {
    let event = match event {
        Some((seq, text)) => match unhex(text.trim()) {
            Some(bytes) => Some((seq, bytes)),
            None => {
                eprintln!("valori verify: --event is not hex");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let request = valori_wire::audit::AuditRequest {
        url,
        key,
        event,
        trusted,
        limits,
    };
    let report = match valori_wire::audit::audit(&request) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("valori verify: {e}");
            return ExitCode::FAILURE;
        }
    };
    print_report(
        &report.findings(),
        report.log_size,
        report.log_root.zip(report.state_hash),
    )
}

/// Prints each finding and the final figures; exit 1 if anything differs.
fn print_report(
    findings: &[valori_engine::verify::Finding],
    events: u64,
    hashes: Option<(valori_core::hash::Hash32, valori_core::hash::Hash32)>,
) -> ExitCode {
    for finding in findings {
        println!("{finding}");
    }
    match hashes {
        Some((root, state)) => println!("events {events}\nlog_root {root}\nstate_hash {state}"),
        None => println!("events {events}"),
    }
    if findings.iter().all(|f| f.ok) {
        println!("verified: no differences");
        ExitCode::SUCCESS
    } else {
        let bad = findings.iter().filter(|f| !f.ok).count();
        println!("FAILED: {bad} difference(s)");
        ExitCode::FAILURE
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn verify(dir: &std::path::Path) -> ExitCode {
    if !dir.is_dir() {
        eprintln!("valori verify: {} is not a directory", dir.display());
        return ExitCode::from(2);
    }
    let report = valori_engine::verify::verify_dir(&valori_engine::storage::FsStorage, dir);
    print_report(
        &report.findings,
        report.events,
        report.log_root.zip(report.state_hash),
    )
}
