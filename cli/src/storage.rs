//! `runnel storage`: Kafka's `kafka-storage` for Runnel's log directories. `format` writes
//! each directory's `meta.properties` with a chosen cluster id before the first start
//! (every node of one cluster needs the same id); `random-uuid` prints a new id.

use std::path::PathBuf;

use anyhow::Context as _;
use runnel_broker::meta_properties;
use runnel_storage::disk::RealDisk;

/// Format log directories for a cluster id, as Kafka's kafka-storage does.
#[derive(clap::Args)]
pub struct StorageArgs {
    #[command(subcommand)]
    command: StorageCommand,
}

#[derive(clap::Subcommand)]
enum StorageCommand {
    /// Print a new cluster id.
    RandomUuid,
    /// Format the log directories of a server.properties for a cluster id.
    Format {
        /// The cluster id, as `runnel storage random-uuid` prints it.
        #[arg(short = 't', long, value_name = "ID")]
        cluster_id: String,
        /// The server's server.properties (log.dirs, node.id).
        #[arg(short = 'c', long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// A data directory instead of the file's log.dirs (as `runnel server --data-dir`).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Leave directories formatted already as they are and format the others.
        #[arg(short = 'g', long)]
        ignore_formatted: bool,
    },
}

pub async fn run(args: StorageArgs) -> anyhow::Result<()> {
    match args.command {
        StorageCommand::RandomUuid => {
            println!("{}", meta_properties::random_cluster_id());
            Ok(())
        }
        StorageCommand::Format {
            cluster_id,
            config,
            data_dir,
            ignore_formatted,
        } => {
            let config = crate::server::load_config(config.as_deref(), data_dir.as_deref(), None)?;
            let formatted = meta_properties::format(
                &RealDisk,
                &config.log_dirs,
                config.node_id,
                &cluster_id,
                ignore_formatted,
            )
            .await
            .context("the log directories were not formatted")?;
            for dir in &config.log_dirs {
                let verb = if formatted.contains(dir) {
                    "formatted"
                } else {
                    "left as it was (formatted already)"
                };
                println!(
                    "{}: {verb}, cluster {cluster_id}, node {}",
                    dir.display(),
                    config.node_id
                );
            }
            Ok(())
        }
    }
}
