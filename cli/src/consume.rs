//! `runnel consume`: print records of a topic, one per line.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context as _};
use runnel_client::kafka::{
    Consumer, ConsumerConfig, ConsumerRecord, GroupConsumer, GroupConsumerConfig, GroupProtocol,
    KafkaError, OffsetReset, TopicPartition,
};
use tokio::time::Instant;

use crate::kafka_args::BootstrapArgs;

/// Print the records of a topic to standard output, one per line.
///
/// Without --from-beginning or --offset it starts at the end and prints records as
/// they arrive, until Ctrl-C, --max-messages or --timeout-ms. With --group it joins that
/// consumer group, shares the topic's partitions with the group's other members, starts
/// where the group left off and commits what it printed.
#[derive(clap::Args)]
pub struct ConsumeArgs {
    /// The topic to read.
    #[arg(long)]
    topic: String,
    /// Start at the earliest offset instead of the end.
    #[arg(long)]
    from_beginning: bool,
    /// Join this consumer group: read the partitions it assigns, from its committed
    /// offsets (--from-beginning: from the earliest where it has none), and commit.
    #[arg(long, value_name = "GROUP", conflicts_with_all = ["partition", "offset"])]
    group: Option<String>,
    /// With --group: a static member id (group.instance.id).
    #[arg(long, value_name = "ID", requires = "group")]
    group_instance_id: Option<String>,
    /// With --group: classic (JoinGroup, the leader assigns) or consumer (KIP-848, the
    /// coordinator assigns).
    #[arg(long, value_name = "PROTOCOL", default_value = "classic", requires = "group", value_parser = parse_group_protocol)]
    group_protocol: GroupProtocol,
    /// Read only this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// Where to start in --partition: an offset, earliest or latest.
    #[arg(long, requires = "partition")]
    offset: Option<String>,
    /// Exit after printing this many records.
    #[arg(long, value_name = "N")]
    max_messages: Option<u64>,
    /// Exit when no record has arrived for this long.
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Print the key before the value.
    #[arg(long)]
    print_key: bool,
    /// Print Offset:N before the record.
    #[arg(long)]
    print_offset: bool,
    /// Print Partition:N before the record.
    #[arg(long)]
    print_partition: bool,
    /// Print CreateTime:MS (or LogAppendTime:MS) before the record.
    #[arg(long)]
    print_timestamp: bool,
    /// Print the headers as KEY:VALUE,... before the key.
    #[arg(long)]
    print_headers: bool,
    /// Between the printed fields.
    #[arg(long, default_value = "\t")]
    separator: String,
    #[command(flatten)]
    bootstrap: BootstrapArgs,
}

pub async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let mut config = ConsumerConfig::new(args.bootstrap.client_config("runnel-consume"));
    config.auto_offset_reset = if args.from_beginning {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    };
    let mut source = match &args.group {
        Some(group) => {
            let mut group_config = GroupConsumerConfig::new(config, group.clone());
            group_config.group_instance_id = args.group_instance_id.clone();
            group_config.group_protocol = args.group_protocol;
            // Commits name exactly what was printed, not what was fetched (see Source).
            group_config.enable_auto_commit = false;
            let mut consumer = GroupConsumer::new(group_config).await?;
            // A missing topic would only ever get an empty assignment: say so instead.
            consumer.cluster().topic(&args.topic, false).await?;
            consumer.subscribe(&[&args.topic])?;
            Source::Group {
                consumer: Box::new(consumer),
                printed: BTreeMap::new(),
            }
        }
        None => Source::Plain(assigned_consumer(&args, config).await?),
    };
    let stdout = std::io::stdout();
    let mut printed = 0u64;
    let idle_limit = args.timeout_ms.map(Duration::from_millis);
    let mut last_record = Instant::now();
    let poll_timeout = Duration::from_millis(500);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    'outer: loop {
        if args.max_messages.is_some_and(|max| printed >= max) {
            break;
        }
        let wait = match idle_limit {
            Some(limit) => {
                let left = limit.saturating_sub(last_record.elapsed());
                if left.is_zero() {
                    break;
                }
                left.min(poll_timeout)
            }
            None => poll_timeout,
        };
        let records = tokio::select! {
            biased;
            _ = &mut ctrl_c => break,
            records = source.poll(wait) => records?,
        };
        if records.is_empty() {
            continue;
        }
        last_record = Instant::now();
        let mut out = stdout.lock();
        for record in records {
            if args.max_messages.is_some_and(|max| printed >= max) {
                break;
            }
            let line = format_record(&args, &record);
            if let Err(e) = out.write_all(&line) {
                // The reader went away (`| head`): stop quietly, as other tools do.
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    break 'outer;
                }
                return Err(e).context("cannot write to standard output");
            }
            printed += 1;
            source.printed(&record);
        }
        if let Err(e) = out.flush() {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(e).context("cannot write to standard output");
        }
        drop(out);
        source.commit().await;
    }
    source.close().await;
    eprintln!("Processed a total of {printed} messages");
    Ok(())
}

/// A consumer of assigned partitions, or a group member.
enum Source {
    Plain(Consumer),
    Group {
        consumer: Box<GroupConsumer>,
        /// The offset after the last printed record of each partition, not yet committed.
        /// At most one entry per partition of the topic.
        printed: BTreeMap<TopicPartition, i64>,
    },
}

impl Source {
    async fn poll(&mut self, wait: Duration) -> Result<Vec<ConsumerRecord>, KafkaError> {
        match self {
            Source::Plain(consumer) => consumer.poll(wait).await,
            Source::Group { consumer, .. } => consumer.poll(wait).await,
        }
    }

    fn printed(&mut self, record: &ConsumerRecord) {
        if let Source::Group { printed, .. } = self {
            printed.insert(
                TopicPartition::new(record.topic.clone(), record.partition),
                record.offset + 1,
            );
        }
    }

    /// Commits what was printed; a failure (the group rebalanced) is reported, not fatal:
    /// those records are printed again by whoever reads the partition next.
    async fn commit(&mut self) {
        if let Source::Group { consumer, printed } = self {
            if printed.is_empty() {
                return;
            }
            let offsets = std::mem::take(printed);
            if let Err(e) = consumer.commit_offsets(&offsets).await {
                tracing::warn!(error = %e, "could not commit the printed offsets");
            }
        }
    }

    async fn close(&mut self) {
        self.commit().await;
        if let Source::Group { consumer, .. } = self {
            if let Err(e) = consumer.close().await {
                tracing::warn!(error = %e, "could not leave the group cleanly");
            }
        }
    }
}

async fn assigned_consumer(args: &ConsumeArgs, config: ConsumerConfig) -> anyhow::Result<Consumer> {
    let mut consumer = Consumer::new(config).await?;
    match args.partition {
        Some(p) => {
            let metadata = consumer.cluster().topic(&args.topic, false).await?;
            if metadata.partition(p).is_none() {
                bail!(
                    "topic {} has {} partitions, so there is no partition {p}",
                    args.topic,
                    metadata.partitions.len()
                );
            }
            let tp = TopicPartition::new(args.topic.clone(), p);
            consumer.assign([tp.clone()]);
            match args.offset.as_deref() {
                None => {}
                Some("earliest") => consumer.seek_to_beginning(&tp)?,
                Some("latest") => consumer.seek_to_end(&tp)?,
                Some(n) => {
                    let offset: i64 = n.parse().with_context(|| {
                        format!("--offset {n:?} is not a number, earliest or latest")
                    })?;
                    if offset < 0 {
                        bail!("--offset must be at least 0");
                    }
                    consumer.seek(&tp, offset)?;
                }
            }
        }
        None => {
            consumer.assign_topic(&args.topic).await?;
        }
    }
    Ok(consumer)
}

fn format_record(args: &ConsumeArgs, r: &ConsumerRecord) -> Vec<u8> {
    let sep = args.separator.as_bytes();
    let mut line = Vec::with_capacity(r.value.as_ref().map_or(4, |v| v.len()) + 32);
    if args.print_timestamp {
        let kind = if r.log_append_time {
            "LogAppendTime"
        } else {
            "CreateTime"
        };
        line.extend_from_slice(format!("{kind}:{}", r.timestamp_ms).as_bytes());
        line.extend_from_slice(sep);
    }
    if args.print_partition {
        line.extend_from_slice(format!("Partition:{}", r.partition).as_bytes());
        line.extend_from_slice(sep);
    }
    if args.print_offset {
        line.extend_from_slice(format!("Offset:{}", r.offset).as_bytes());
        line.extend_from_slice(sep);
    }
    if args.print_headers {
        if r.headers.is_empty() {
            line.extend_from_slice(b"NO_HEADERS");
        }
        for (i, (k, v)) in r.headers.iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            line.extend_from_slice(k.as_bytes());
            line.push(b':');
            line.extend_from_slice(v.as_deref().unwrap_or(b"null"));
        }
        line.extend_from_slice(sep);
    }
    if args.print_key {
        line.extend_from_slice(r.key.as_deref().unwrap_or(b"null"));
        line.extend_from_slice(sep);
    }
    line.extend_from_slice(r.value.as_deref().unwrap_or(b"null"));
    line.push(b'\n');
    line
}

fn parse_group_protocol(s: &str) -> Result<GroupProtocol, String> {
    GroupProtocol::parse(s).map_err(|e| e.to_string())
}
