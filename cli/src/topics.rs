//! `runnel topics`: create, list, describe, alter and delete topics.

use anyhow::{bail, Context as _};
use clap::Subcommand;
use runnel_client::kafka::admin::ConfigSource;
use runnel_client::kafka::{Admin, AlterConfigOp, ConfigResource, KafkaError, NewTopic};
use runnel_protocol::kafka::ResponseError;

use crate::kafka_args::{parse_key_value, BootstrapArgs};

/// Create, list, describe, alter and delete topics.
#[derive(clap::Args)]
pub struct TopicsArgs {
    #[command(subcommand)]
    action: TopicsAction,
    #[command(flatten)]
    bootstrap: BootstrapArgs,
}

#[derive(Subcommand)]
enum TopicsAction {
    /// Create a topic.
    Create {
        /// The topic's name.
        #[arg(long)]
        topic: String,
        /// Number of partitions [default: the broker's num.partitions].
        #[arg(long)]
        partitions: Option<i32>,
        /// Copies of each partition [default: the broker's default.replication.factor].
        #[arg(long)]
        replication_factor: Option<i16>,
        /// A topic config, KEY=VALUE (e.g. retention.ms=60000); repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Succeed quietly when the topic already exists.
        #[arg(long)]
        if_not_exists: bool,
        /// Only check that the broker would accept it.
        #[arg(long)]
        validate_only: bool,
    },
    /// List topic names, one per line.
    List,
    /// Show partitions, leaders, replicas, in-sync replicas and configs.
    Describe {
        /// The topic [default: every topic].
        #[arg(long)]
        topic: Option<String>,
    },
    /// Add partitions or change configs.
    Alter {
        /// The topic's name.
        #[arg(long)]
        topic: String,
        /// The new total number of partitions (can only grow).
        #[arg(long)]
        partitions: Option<i32>,
        /// Set a topic config, KEY=VALUE; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Return a topic config to its default; repeatable.
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
    },
    /// Delete a topic and its data.
    Delete {
        /// The topic's name.
        #[arg(long)]
        topic: String,
        /// Succeed quietly when the topic does not exist.
        #[arg(long)]
        if_exists: bool,
    },
}

pub async fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let admin = Admin::connect(args.bootstrap.client_config("runnel-topics")).await?;
    match args.action {
        TopicsAction::Create {
            topic,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
            validate_only,
        } => {
            let mut new = NewTopic::new(
                &topic,
                partitions.unwrap_or(-1),
                replication_factor.unwrap_or(-1),
            );
            new.configs = configs;
            match admin.create_topic(new, validate_only).await {
                Ok(()) if validate_only => eprintln!("Topic {topic} can be created."),
                Ok(()) => eprintln!("Created topic {topic}."),
                Err(e) if if_not_exists && e.code() == Some(ResponseError::TopicAlreadyExists) => {}
                Err(e) => return Err(e.into()),
            }
        }
        TopicsAction::List => {
            for name in admin.list_topics().await? {
                println!("{name}");
            }
        }
        TopicsAction::Describe { topic } => {
            let names: Vec<String> = topic.into_iter().collect();
            for t in admin.describe_topics(&names).await? {
                let replication = t.partitions.first().map_or(0, |p| p.replicas.len());
                let configs = match admin
                    .describe_configs(&ConfigResource::Topic(t.name.clone()))
                    .await
                {
                    Ok(entries) => entries
                        .into_iter()
                        .filter(|e| e.source == ConfigSource::DynamicTopic)
                        .map(|e| format!("{}={}", e.name, e.value.unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(","),
                    Err(e) => {
                        tracing::debug!(error = %e, "no configs");
                        String::new()
                    }
                };
                println!(
                    "Topic: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
                    t.name,
                    t.partitions.len(),
                    replication,
                    configs
                );
                for p in &t.partitions {
                    println!(
                        "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                        t.name,
                        p.partition,
                        if p.leader >= 0 {
                            p.leader.to_string()
                        } else {
                            "none".into()
                        },
                        join(&p.replicas),
                        join(&p.isr)
                    );
                }
            }
        }
        TopicsAction::Alter {
            topic,
            partitions,
            configs,
            delete_configs,
        } => {
            if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
                bail!("nothing to change; give --partitions N, --config KEY=VALUE or --delete-config KEY");
            }
            if let Some(n) = partitions {
                admin
                    .create_partitions(&topic, n, false)
                    .await
                    .with_context(|| format!("cannot grow {topic} to {n} partitions"))?;
                eprintln!("Topic {topic} now has {n} partitions.");
            }
            if !configs.is_empty() || !delete_configs.is_empty() {
                let ops: Vec<AlterConfigOp> = configs
                    .into_iter()
                    .map(|(k, v)| AlterConfigOp::Set(k, v))
                    .chain(delete_configs.into_iter().map(AlterConfigOp::Delete))
                    .collect();
                admin
                    .alter_configs(&ConfigResource::Topic(topic.clone()), &ops, false)
                    .await?;
                eprintln!("Updated the configs of topic {topic}.");
            }
        }
        TopicsAction::Delete { topic, if_exists } => match admin.delete_topic(&topic).await {
            Ok(()) => eprintln!("Deleted topic {topic}."),
            Err(KafkaError::UnknownTopic { .. }) if if_exists => {}
            Err(e) => return Err(e.into()),
        },
    }
    Ok(())
}

fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}
