//! `runnel`: the server and the client tools.
//!
//! `runnel server` runs a broker (`runnel-broker`) on the real disk; the other commands
//! are Kafka clients built on `runnel-client`, so they work against any Kafka broker.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cluster;
mod connect;
mod consume;
mod groups;
mod kafka_args;
mod perf;
mod produce;
mod server;
mod storage;
mod topics;

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
    Storage(storage::StorageArgs),
    Topics(topics::TopicsArgs),
    Groups(groups::GroupsArgs),
    Produce(produce::ProduceArgs),
    Consume(consume::ConsumeArgs),
    Perf(perf::PerfArgs),
    Connect(connect::ConnectArgs),
    Cluster(cluster::ClusterArgs),
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
        Command::Storage(args) => storage::run(args).await,
        Command::Topics(args) => topics::run(args).await,
        Command::Groups(args) => groups::run(args).await,
        Command::Produce(args) => produce::run(args).await,
        Command::Consume(args) => consume::run(args).await,
        Command::Perf(args) => perf::run(args).await,
        Command::Connect(args) => connect::run(args).await,
        Command::Cluster(args) => cluster::run(args).await,
    }
}
