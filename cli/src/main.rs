//! `runnel`: the server and the client tools.
//!
//! Today `runnel server` starts a node: the actor runtime, the node transport and the
//! durable counter service on the real disk. The Kafka listener joins it with the broker.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use runnel_actors::counter::{CounterService, IncrementRequest, ReadRequest, SyncPolicy};
use runnel_actors::transport::{Transport, TransportConfig};
use runnel_actors::{Node, RestartPolicy, ShutdownReason};
use runnel_client::{CounterClient, Outcome};
use runnel_storage::disk::RealDisk;

/// Where node-to-node traffic listens by default; 9092 stays free for the Kafka listener.
const DEFAULT_NODE_LISTEN: &str = "127.0.0.1:9093";
/// The server's own node id when talking to it from the CLI.
const SERVER_NODE_ID: u64 = 1;
const CLI_NODE_ID: u64 = 0;

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
    /// Start a Runnel node and run it until Ctrl-C.
    Server {
        /// Where the node keeps its data.
        #[arg(long, default_value = "./runnel-data")]
        data_dir: PathBuf,
        /// Address for node-to-node traffic (and for `runnel counter`).
        #[arg(long, default_value = DEFAULT_NODE_LISTEN)]
        node_listen: SocketAddr,
        /// Acknowledge counter increments before they are fsynced (can lose them in a crash).
        #[arg(long)]
        ack_before_fsync: bool,
    },
    /// Talk to the durable counter service of a running server.
    Counter {
        #[command(subcommand)]
        action: CounterAction,
        /// The server's node address.
        #[arg(long, global = true, default_value = DEFAULT_NODE_LISTEN)]
        server: SocketAddr,
        /// How long to wait for each answer, in milliseconds.
        #[arg(long, global = true, default_value_t = 5000)]
        timeout_ms: u64,
    },
}

#[derive(Subcommand)]
enum CounterAction {
    /// Add increments with the given ids; prints the counter's value after each.
    Increment {
        #[arg(required = true)]
        ids: Vec<u64>,
    },
    /// Print every increment id the server holds, one per line.
    Read,
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
        Command::Server {
            data_dir,
            node_listen,
            ack_before_fsync,
        } => server(data_dir, node_listen, ack_before_fsync).await,
        Command::Counter {
            action,
            server,
            timeout_ms,
        } => counter(action, server, Duration::from_millis(timeout_ms)).await,
    }
}

async fn server(
    data_dir: PathBuf,
    node_listen: SocketAddr,
    ack_before_fsync: bool,
) -> anyhow::Result<()> {
    let node = Node::new("runnel");
    let transport = Transport::start(&node, TransportConfig::new(SERVER_NODE_ID, node_listen))
        .await
        .with_context(|| {
            format!("cannot listen on {node_listen}; is another runnel server running there? Choose another address with --node-listen")
        })?;
    let policy = if ack_before_fsync {
        SyncPolicy::AckBeforeFsync {
            flush_interval: Duration::from_secs(1),
        }
    } else {
        SyncPolicy::FsyncBeforeAck
    };
    let counter_dir = data_dir.join("counter");
    let counter = node.spawn("counter", 1024, RestartPolicy::default(), move || {
        CounterService::new(Arc::new(RealDisk::new()), counter_dir.clone(), policy)
    });
    transport.serve::<_, IncrementRequest>(counter.clone(), Duration::from_secs(5));
    transport.serve::<_, ReadRequest>(counter, Duration::from_secs(5));
    // The counter recovers its log in `started`; a read proves the node is ready to serve.
    transport
        .ask(SERVER_NODE_ID, &ReadRequest {}, Duration::from_secs(60))
        .await
        .context("the counter service did not start")?;
    eprintln!(
        "runnel: node {SERVER_NODE_ID} listening on {} with data in {}; Ctrl-C stops it",
        transport.local_addr(),
        data_dir.display()
    );

    let stopper = node.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stopper.shutdown(ShutdownReason::Requested);
        }
    });
    match node.stopped().await {
        ShutdownReason::Requested => {
            eprintln!("runnel: stopped cleanly");
            Ok(())
        }
        reason => bail!("stopped: {reason}"),
    }
}

async fn counter(
    action: CounterAction,
    server: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<()> {
    let node = Node::new("runnel-cli");
    let config = TransportConfig::new(CLI_NODE_ID, SocketAddr::from(([127, 0, 0, 1], 0)))
        .with_peer(SERVER_NODE_ID, server);
    let transport = Transport::start(&node, config)
        .await
        .context("cannot open a local socket")?;
    let client = CounterClient::new(transport, timeout);
    let result = match action {
        CounterAction::Increment { ids } => {
            let mut result = Ok(());
            for id in ids {
                match client.increment(SERVER_NODE_ID, id).await {
                    Outcome::Ok(value) => println!("{value}"),
                    Outcome::Failed(e) => {
                        result = Err(anyhow::anyhow!("increment {id} failed and was not applied: {e}"));
                        break;
                    }
                    Outcome::Unknown(e) => {
                        result = Err(anyhow::anyhow!(
                            "increment {id} may or may not have been applied: {e}. Is a server running at {server}? Start one with `runnel server`"
                        ));
                        break;
                    }
                }
            }
            result
        }
        CounterAction::Read => match client.read(SERVER_NODE_ID).await {
            Outcome::Ok(ids) => {
                for id in ids {
                    println!("{id}");
                }
                Ok(())
            }
            Outcome::Failed(e) | Outcome::Unknown(e) => Err(anyhow::anyhow!(
                "cannot read the counter: {e}. Is a server running at {server}? Start one with `runnel server`"
            )),
        },
    };
    node.shutdown(ShutdownReason::Requested);
    result
}
