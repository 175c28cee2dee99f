//! `runnel counter`: the durable counter service, over the node transport.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use runnel_actors::transport::{Transport, TransportConfig};
use runnel_actors::{Node, ShutdownReason};
use runnel_client::{CounterClient, Outcome};

use crate::{CLI_NODE_ID, DEFAULT_NODE_LISTEN, SERVER_NODE_ID};

/// Talk to the durable counter service of a running server.
#[derive(clap::Args)]
pub struct CounterArgs {
    #[command(subcommand)]
    action: CounterAction,
    /// The server's node address.
    #[arg(long, global = true, default_value = DEFAULT_NODE_LISTEN)]
    server: SocketAddr,
    /// How long to wait for each answer, in milliseconds.
    #[arg(long, global = true, default_value_t = 5000)]
    timeout_ms: u64,
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

pub async fn run(args: CounterArgs) -> anyhow::Result<()> {
    let CounterArgs {
        action,
        server,
        timeout_ms,
    } = args;
    let timeout = Duration::from_millis(timeout_ms);
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
