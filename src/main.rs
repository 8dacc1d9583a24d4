//! The `wsgate` binary: parse the command line, set up logs and metrics, run the command.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::{EnvFilter, fmt};
use wsgate::config::{Cli, Command, LogFormat};

/// jemalloc instead of glibc's malloc. A connection is a few hundred small allocations, many
/// of them (task cells, buffers) freed on another worker thread than the one that made them:
/// glibc's arenas spent about a fifth of a connect's user-space instructions in `malloc` and
/// `free` and added a 16-byte header to every block. Figures (RSS per idle connection,
/// instructions and CPU per connect, CPU per delivery) in BENCHMARKS.md, "Issue 15: idle
/// memory and connect cost".
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Log level without `RUST_LOG`. The redis crate's cluster client warns on every retry while
/// a node fails over (hundreds of lines); the cluster engine logs the state changes itself.
const DEFAULT_LOG: &str = "info,redis=error";

/// Crates whose debug lines print what clients send (socketioxide logs the CONNECT `auth`
/// object and every packet, so tokens; engineioxide logs refused requests with their
/// headers). They stay at `info` unless `RUST_LOG` names them: `RUST_LOG=debug` must not
/// put a credential in a log line.
const QUIET_UNLESS_NAMED: [&str; 2] = ["socketioxide", "engineioxide"];

fn init_logs(format: LogFormat) {
    let asked = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    for target in QUIET_UNLESS_NAMED {
        if !asked.contains(target)
            && let Ok(directive) = format!("{target}=info").parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    // Colours only on a terminal: a log file or a collector reading stderr gets plain text
    // (`NO_COLOR` set turns them off on a terminal too).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wsgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(cfg) => {
                init_logs(cfg.log_format);
                let metrics = match wsgate::telemetry::install() {
                    Ok(h) => Some(h),
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics disabled");
                        None
                    }
                };
                wsgate::serve::run(cfg, metrics)
                    .await
                    .map_err(|e| e.to_string())
            }
            Command::Bench(cfg) => {
                init_logs(LogFormat::Text);
                wsgate::bench::run(cfg).await.map_err(|e| e.to_string())
            }
            Command::Healthcheck(cfg) => wsgate::healthcheck::run(&cfg.url)
                .await
                .map_err(|e| e.to_string()),
            Command::Publish(cfg) => {
                init_logs(LogFormat::Text);
                wsgate::publish::run(cfg).await.map_err(|e| e.to_string())
            }
            Command::Revoke(cfg) => {
                init_logs(LogFormat::Text);
                wsgate::publish::revoke::run(cfg)
                    .await
                    .map_err(|e| e.to_string())
            }
            Command::Token(cfg) => wsgate::auth::mint::run(&cfg).map_err(|e| e.to_string()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsgate: {e}");
            ExitCode::FAILURE
        }
    }
}
