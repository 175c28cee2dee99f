//! `runnel consume`: print records of a topic, one per line.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context as _};
use runnel_client::kafka::{Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, TopicPartition};
use tokio::time::Instant;

use crate::kafka_args::BootstrapArgs;

/// Print the records of a topic to standard output, one per line.
///
/// Without --from-beginning or --offset it starts at the end and prints records as
/// they arrive, until Ctrl-C, --max-messages or --timeout-ms.
#[derive(clap::Args)]
pub struct ConsumeArgs {
    /// The topic to read.
    #[arg(long)]
    topic: String,
    /// Start at the earliest offset instead of the end.
    #[arg(long)]
    from_beginning: bool,
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
            records = consumer.poll(wait) => records?,
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
        }
        if let Err(e) = out.flush() {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(e).context("cannot write to standard output");
        }
    }
    eprintln!("Processed a total of {printed} messages");
    Ok(())
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
