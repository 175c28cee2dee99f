//! `runnel`: the server and the client tools.
//!
//! Today `runnel server` starts a node: the actor runtime, the node transport and the
//! durable counter service on the real disk. The Kafka listener joins it with the broker.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod consume;
mod counter;
mod groups;
mod kafka_args;
mod perf;
mod produce;
mod server;
mod topics;

/// Where node-to-node traffic listens by default; 9092 stays free for the Kafka listener.
pub(crate) const DEFAULT_NODE_LISTEN: &str = "127.0.0.1:9093";
/// The server's own node id when talking to it from the CLI.
pub(crate) const SERVER_NODE_ID: u64 = 1;
pub(crate) const CLI_NODE_ID: u64 = 0;

#[derive(Parser)]
#[command(
    name = "runnel",
    version,
    about = "Runnel: a Kafka-compatible distributed event log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Server(server::ServerArgs),
    Counter(counter::CounterArgs),
    Topics(topics::TopicsArgs),
    Groups(groups::GroupsArgs),
    Produce(produce::ProduceArgs),
    Consume(consume::ConsumeArgs),
    Perf(perf::PerfArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("runnel: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runnel: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(args) => server::run(args).await,
        Command::Counter(args) => counter::run(args).await,
        Command::Topics(args) => topics::run(args).await,
        Command::Groups(args) => groups::run(args).await,
        Command::Produce(args) => produce::run(args).await,
        Command::Consume(args) => consume::run(args).await,
        Command::Perf(args) => perf::run(args).await,
    }
}
