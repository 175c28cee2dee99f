//! `runnel perf produce|consume`: throughput and latency, in the manner of Kafka's
//! kafka-producer-perf-test and kafka-consumer-perf-test. A progress line goes to stderr
//! every second; the summary goes to stdout.

use std::time::Duration;

use anyhow::bail;
use bytes::Bytes;
use clap::Subcommand;
use futures::stream::{FuturesUnordered, StreamExt};
use runnel_client::kafka::records::parse_compression;
use runnel_client::kafka::{
    Acks, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::kafka_args::BootstrapArgs;

/// Records in flight between the sending loop and the latency collector.
const MAX_TRACKED_RECORDS: usize = 100_000;
const MB: f64 = 1024.0 * 1024.0;

/// Measure produce or consume throughput and latency.
#[derive(clap::Args)]
pub struct PerfArgs {
    #[command(subcommand)]
    action: PerfAction,
    #[command(flatten)]
    bootstrap: BootstrapArgs,
}

#[derive(Subcommand)]
enum PerfAction {
    /// Send records as fast as allowed; report records/s, MB/s and latency percentiles.
    Produce {
        /// The topic to write to (create it first with `runnel topics create`).
        #[arg(long)]
        topic: String,
        /// How many records to send.
        #[arg(long, default_value_t = 1_000_000)]
        num_records: u64,
        /// Value size in bytes.
        #[arg(long, default_value_t = 100)]
        record_size: usize,
        /// Records per second to aim for; -1 for as fast as possible.
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        throughput: i64,
        /// 0, 1 or all.
        #[arg(long, default_value = "1")]
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
        /// Use an idempotent producer (needs --acks all).
        #[arg(long)]
        idempotence: bool,
    },
    /// Read records from the beginning; report records/s and MB/s.
    Consume {
        /// The topic to read from the beginning.
        #[arg(long)]
        topic: String,
        /// Stop after this many records.
        #[arg(long, default_value_t = 1_000_000)]
        num_records: u64,
        /// Stop when no record has arrived for this long.
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
        /// Bytes per partition per fetch.
        #[arg(long, default_value_t = 1 << 20)]
        max_partition_fetch_bytes: i32,
    },
}

pub async fn run(args: PerfArgs) -> anyhow::Result<()> {
    match args.action {
        PerfAction::Produce {
            topic,
            num_records,
            record_size,
            throughput,
            acks,
            compression,
            linger_ms,
            batch_size,
            idempotence,
        } => {
            let acks = Acks::parse(&acks)?;
            let mut config = ProducerConfig::new(args.bootstrap.client_config("runnel-perf"));
            config.acks = acks;
            config.enable_idempotence = idempotence;
            config.compression = parse_compression(&compression)?;
            config.linger_ms = linger_ms;
            config.batch_size_bytes = batch_size;
            config.max_request_bytes = config.max_request_bytes.max(record_size + 1024);
            config.buffer_memory_bytes = config.buffer_memory_bytes.max(config.max_request_bytes);
            produce(config, topic, num_records, record_size, throughput).await
        }
        PerfAction::Consume {
            topic,
            num_records,
            timeout_ms,
            max_partition_fetch_bytes,
        } => {
            let mut config = ConsumerConfig::new(args.bootstrap.client_config("runnel-perf"));
            config.auto_offset_reset = OffsetReset::Earliest;
            config.max_partition_fetch_bytes = max_partition_fetch_bytes;
            consume(config, topic, num_records, timeout_ms).await
        }
    }
}

/// A value of `size` bytes of letters, like the Java perf tool's random payload.
fn payload(size: usize) -> Bytes {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b'A' + (state % 26) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// Latencies in microseconds and a window for the per-second progress line.
struct Stats {
    latencies_us: Vec<u32>,
    bytes: u64,
    failed: u64,
    first_error: Option<String>,
    window_count: u64,
    window_bytes: u64,
    window_latency_us: u64,
    window_max_us: u32,
    window_start: Instant,
}

impl Stats {
    fn record(&mut self, latency: Duration, bytes: usize) {
        let us = latency.as_micros().min(u32::MAX as u128) as u32;
        self.latencies_us.push(us);
        self.bytes += bytes as u64;
        self.window_count += 1;
        self.window_bytes += bytes as u64;
        self.window_latency_us += u64::from(us);
        self.window_max_us = self.window_max_us.max(us);
    }

    fn maybe_report(&mut self) {
        let elapsed = self.window_start.elapsed();
        if elapsed < Duration::from_secs(1) {
            return;
        }
        let secs = elapsed.as_secs_f64();
        eprintln!(
            "{} records sent, {:.1} records/sec ({:.2} MB/sec), {:.1} ms avg latency, {:.1} ms max latency.",
            self.window_count,
            self.window_count as f64 / secs,
            self.window_bytes as f64 / MB / secs,
            self.window_latency_us as f64 / 1000.0 / self.window_count.max(1) as f64,
            f64::from(self.window_max_us) / 1000.0
        );
        self.window_count = 0;
        self.window_bytes = 0;
        self.window_latency_us = 0;
        self.window_max_us = 0;
        self.window_start = Instant::now();
    }
}

async fn produce(
    config: ProducerConfig,
    topic: String,
    num_records: u64,
    record_size: usize,
    throughput: i64,
) -> anyhow::Result<()> {
    let producer = Producer::new(config).await?;
    let value = payload(record_size);
    let (tracked, mut to_track) = mpsc::channel(MAX_TRACKED_RECORDS);
    // Completions are timed where they happen, not in send order.
    let collector = tokio::spawn(async move {
        let mut stats = Stats {
            latencies_us: Vec::with_capacity(num_records.min(50_000_000) as usize),
            bytes: 0,
            failed: 0,
            first_error: None,
            window_count: 0,
            window_bytes: 0,
            window_latency_us: 0,
            window_max_us: 0,
            window_start: Instant::now(),
        };
        let mut pending = FuturesUnordered::new();
        let mut open = true;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while open || !pending.is_empty() {
            tokio::select! {
                biased;
                Some((sent_at, result)) = pending.next(), if !pending.is_empty() => {
                    let sent_at: Instant = sent_at;
                    match result {
                        Ok(_) => stats.record(sent_at.elapsed(), record_size),
                        Err(e) => {
                            stats.failed += 1;
                            stats.first_error.get_or_insert_with(|| format!("{e}"));
                        }
                    }
                }
                next = to_track.recv(), if open => match next {
                    Some((sent_at, delivery)) => pending.push(async move {
                        let delivery: runnel_client::kafka::DeliveryFuture = delivery;
                        (sent_at, delivery.await)
                    }),
                    None => open = false,
                },
                _ = tick.tick() => stats.maybe_report(),
            }
        }
        stats
    });
    let start = Instant::now();
    for i in 0..num_records {
        if throughput > 0 {
            let due = start + Duration::from_secs_f64(i as f64 / throughput as f64);
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
        }
        let sent_at = Instant::now();
        let delivery = producer
            .send(ProducerRecord::new(topic.clone(), value.clone()))
            .await?;
        if tracked.send((sent_at, delivery)).await.is_err() {
            bail!("the latency collector stopped");
        }
    }
    drop(tracked);
    producer.flush().await;
    let mut stats = collector.await?;
    let elapsed = start.elapsed().as_secs_f64();
    producer.close().await;
    let done = stats.latencies_us.len() as u64;
    stats.latencies_us.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if stats.latencies_us.is_empty() {
            return 0.0;
        }
        let at = ((p * stats.latencies_us.len() as f64).ceil() as usize)
            .clamp(1, stats.latencies_us.len())
            - 1;
        f64::from(stats.latencies_us[at]) / 1000.0
    };
    let avg = stats
        .latencies_us
        .iter()
        .map(|&l| u64::from(l))
        .sum::<u64>() as f64
        / 1000.0
        / done.max(1) as f64;
    println!(
        "{done} records sent, {:.1} records/sec ({:.2} MB/sec), {avg:.2} ms avg latency, {:.2} ms max latency, {:.2} ms 50th, {:.2} ms 95th, {:.2} ms 99th, {:.2} ms 99.9th.",
        done as f64 / elapsed,
        stats.bytes as f64 / MB / elapsed,
        stats.latencies_us.last().map_or(0.0, |&l| f64::from(l) / 1000.0),
        percentile(0.50),
        percentile(0.95),
        percentile(0.99),
        percentile(0.999),
    );
    if stats.failed > 0 {
        bail!(
            "{} of {num_records} records failed; the first error: {}",
            stats.failed,
            stats.first_error.unwrap_or_default()
        );
    }
    Ok(())
}

async fn consume(
    config: ConsumerConfig,
    topic: String,
    num_records: u64,
    timeout_ms: u64,
) -> anyhow::Result<()> {
    let mut consumer = Consumer::new(config).await?;
    consumer.assign_topic(&topic).await?;
    let start = Instant::now();
    let idle_limit = Duration::from_millis(timeout_ms);
    let mut last_record = Instant::now();
    let mut count = 0u64;
    let mut bytes = 0u64;
    let mut window_start = Instant::now();
    let mut window_count = 0u64;
    let mut window_bytes = 0u64;
    let mut fetch_latencies_us: Vec<u32> = Vec::new();
    while count < num_records {
        let left = idle_limit.saturating_sub(last_record.elapsed());
        if left.is_zero() {
            eprintln!("no record for {timeout_ms} ms; stopping early");
            break;
        }
        let polled_at = Instant::now();
        let records = consumer.poll(left.min(Duration::from_millis(500))).await?;
        if !records.is_empty() {
            last_record = Instant::now();
            fetch_latencies_us.push(polled_at.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
        for r in records.iter().take((num_records - count) as usize) {
            let size =
                r.value.as_ref().map_or(0, |v| v.len()) + r.key.as_ref().map_or(0, |k| k.len());
            count += 1;
            bytes += size as u64;
            window_count += 1;
            window_bytes += size as u64;
        }
        let window = window_start.elapsed();
        if window >= Duration::from_secs(1) {
            eprintln!(
                "{window_count} records read, {:.1} records/sec ({:.2} MB/sec).",
                window_count as f64 / window.as_secs_f64(),
                window_bytes as f64 / MB / window.as_secs_f64()
            );
            window_start = Instant::now();
            window_count = 0;
            window_bytes = 0;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    fetch_latencies_us.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if fetch_latencies_us.is_empty() {
            return 0.0;
        }
        let at = ((p * fetch_latencies_us.len() as f64).ceil() as usize)
            .clamp(1, fetch_latencies_us.len())
            - 1;
        f64::from(fetch_latencies_us[at]) / 1000.0
    };
    println!("data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, fetch.ms.p50, fetch.ms.p99, fetch.ms.p99.9");
    println!(
        "{:.4}, {:.4}, {count}, {:.4}, {:.2}, {:.2}, {:.2}",
        bytes as f64 / MB,
        bytes as f64 / MB / elapsed,
        count as f64 / elapsed,
        percentile(0.5),
        percentile(0.99),
        percentile(0.999),
    );
    Ok(())
}
