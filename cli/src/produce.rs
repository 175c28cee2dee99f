//! `runnel produce`: one record per line of standard input.

use std::collections::VecDeque;

use anyhow::bail;
use bytes::Bytes;
use runnel_client::kafka::records::parse_compression;
use runnel_client::kafka::{
    Acks, DeliveryFuture, KafkaError, Producer, ProducerConfig, ProducerRecord,
};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::kafka_args::{parse_key_value, BootstrapArgs};

/// Records sent but not yet acknowledged before reading more input waits for the oldest.
const MAX_UNACKNOWLEDGED_RECORDS: usize = 10_000;

/// Send each line of standard input as a record.
#[derive(clap::Args)]
pub struct ProduceArgs {
    /// The topic to write to.
    #[arg(long)]
    topic: String,
    /// Split each line at the first SEP into key and value (lines without it fail).
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// kafka-console-producer style properties: parse.key=true, key.separator=SEP,
    /// null.marker=TEXT (a key or value equal to it is sent as null).
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    properties: Vec<(String, String)>,
    /// Send every record to this partition instead of letting the partitioner choose.
    #[arg(long)]
    partition: Option<i32>,
    /// A header KEY=VALUE added to every record; repeatable.
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    headers: Vec<(String, String)>,
    /// Acknowledgements to wait for: 0, 1 or all (-1).
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// How long a batch waits for more records before it is sent.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Bytes per partition batch; a full batch is sent at once.
    #[arg(long, default_value_t = 16384)]
    batch_size: usize,
    #[command(flatten)]
    bootstrap: BootstrapArgs,
}

pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let mut key_separator = args.key_separator.clone();
    let mut null_marker: Option<String> = None;
    let mut parse_key = key_separator.is_some();
    for (k, v) in &args.properties {
        match k.as_str() {
            "parse.key" => parse_key = v == "true",
            "key.separator" => key_separator = Some(v.clone()),
            "null.marker" => null_marker = Some(v.clone()),
            other => {
                bail!("unknown property {other:?}; known: parse.key, key.separator, null.marker")
            }
        }
    }
    let key_separator = match (parse_key, key_separator) {
        (true, Some(sep)) => Some(sep),
        (true, None) => Some("\t".to_string()),
        (false, _) => None,
    };
    let acks = Acks::parse(&args.acks)?;
    let mut config = ProducerConfig::new(args.bootstrap.client_config("runnel-produce"));
    config.acks = acks;
    config.enable_idempotence = acks == Acks::All;
    config.compression = parse_compression(&args.compression)?;
    config.linger_ms = args.linger_ms;
    config.batch_size_bytes = args.batch_size;
    let producer = Producer::new(config).await?;
    let headers: Vec<(String, Option<Bytes>)> = args
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Some(Bytes::copy_from_slice(v.as_bytes()))))
        .collect();
    let as_field = |s: &str| -> Option<Bytes> {
        match &null_marker {
            Some(marker) if marker == s => None,
            _ => Some(Bytes::copy_from_slice(s.as_bytes())),
        }
    };

    let mut unacknowledged: VecDeque<DeliveryFuture> = VecDeque::new();
    let mut failures = 0u64;
    let mut first_failure: Option<KafkaError> = None;
    let mut note = |result: Result<_, KafkaError>| {
        if let Err(e) = result {
            failures += 1;
            first_failure.get_or_insert(e);
        }
    };
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut line_number = 0u64;
    while let Some(line) = lines.next_line().await? {
        line_number += 1;
        let (key, value) = match &key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (as_field(k), as_field(v)),
                None => bail!(
                    "line {line_number} has no key separator {sep:?}; write KEY{sep}VALUE, or drop --key-separator"
                ),
            },
            None => (None, as_field(&line)),
        };
        let record = ProducerRecord {
            topic: args.topic.clone(),
            partition: args.partition,
            key,
            value,
            headers: headers.clone(),
            timestamp_ms: None,
        };
        unacknowledged.push_back(producer.send(record).await?);
        if unacknowledged.len() >= MAX_UNACKNOWLEDGED_RECORDS {
            if let Some(oldest) = unacknowledged.pop_front() {
                note(oldest.await);
            }
        }
    }
    producer.flush().await;
    for delivery in unacknowledged {
        note(delivery.await);
    }
    producer.close().await;
    if let Some(e) = first_failure {
        bail!("{failures} of {line_number} records were not written; the first error: {e}");
    }
    Ok(())
}
