//! Produce: validate each partition's record batches and append them as sent.
//!
//! The broker checks batch headers and CRCs but never decodes records, so compressed
//! batches are stored exactly as the producer compressed them. Errors are per partition;
//! one bad partition does not fail the others. acks=0 gets no response at all.

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use runnel_protocol::batch::{BatchError, RecordBatch};

use crate::group::coordinator::OFFSETS_TOPIC;
use crate::partition::AppendOutcome;
use crate::producer_state::SequenceError;
use crate::{now_ms, ApiError, Broker};

pub async fn handle(
    broker: &Broker,
    request: ProduceRequest,
    _version: i16,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let refuse_all = if !matches!(acks, -1..=1) {
        Some(ApiError::new(
            ResponseError::InvalidRequiredAcks,
            format!("acks must be -1 (all), 0 or 1, not {acks}"),
        ))
    } else if request.transactional_id.is_some() {
        Some(ApiError::new(
            ResponseError::InvalidRecord,
            "transactions are not supported yet",
        ))
    } else {
        None
    };
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let result = match &refuse_all {
                Some(error) => Err(error.clone()),
                None => append(broker, &name, data.index, data.records).await,
            };
            let response = PartitionProduceResponse::default().with_index(data.index);
            partitions.push(match result {
                Ok(done) => response
                    .with_base_offset(done.base_offset)
                    .with_log_append_time_ms(done.log_append_time_ms)
                    .with_log_start_offset(done.log_start_offset),
                Err(error) => response
                    .with_error_code(error.code.code())
                    .with_base_offset(-1)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(-1)
                    .with_error_message(Some(StrBytes::from_string(error.message))),
            });
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partitions),
        );
    }
    (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}

struct Appended {
    base_offset: i64,
    log_append_time_ms: i64,
    log_start_offset: i64,
}

async fn append(
    broker: &Broker,
    topic: &str,
    index: i32,
    records: Option<Bytes>,
) -> Result<Appended, ApiError> {
    let image = broker.image();
    let unknown = || {
        ApiError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("this broker has no partition {topic}-{index}"),
        )
    };
    let topic_image = image.topics.get(topic).ok_or_else(unknown)?;
    if topic == OFFSETS_TOPIC {
        // Kafka's rule too: clients never write the coordinator's records.
        return Err(ApiError::new(
            ResponseError::InvalidTopicException,
            format!("cannot append to the internal topic {OFFSETS_TOPIC}"),
        ));
    }
    let partition = broker.partition(topic, index).ok_or_else(unknown)?;
    let config = broker.topic_config(topic_image);
    let records = records.unwrap_or_default();
    let mut batches = RecordBatch::parse_all(records).map_err(|e| {
        let code = match e {
            BatchError::UnsupportedMagic { .. } => ResponseError::UnsupportedForMessageFormat,
            _ => ResponseError::CorruptMessage,
        };
        ApiError::new(code, format!("partition {topic}-{index}: {e}"))
    })?;
    if batches.is_empty() {
        return Err(ApiError::new(
            ResponseError::InvalidRecord,
            "the request holds no record batch for this partition",
        ));
    }
    let max_bytes = config.log_config().max_message_bytes;
    for batch in &batches {
        if batch.size_bytes() > max_bytes {
            return Err(ApiError::new(
                ResponseError::MessageTooLarge,
                format!(
                    "a batch of {} bytes exceeds max.message.bytes ({max_bytes}) of topic {topic}",
                    batch.size_bytes()
                ),
            ));
        }
        // Compaction may leave gaps inside a batch, but a producer's batch has none.
        if batch.record_count() < 1
            || i64::from(batch.last_offset_delta()) != i64::from(batch.record_count()) - 1
        {
            return Err(ApiError::new(
                ResponseError::InvalidRecord,
                format!(
                    "a batch with {} records claims a last offset delta of {}",
                    batch.record_count(),
                    batch.last_offset_delta()
                ),
            ));
        }
        if batch.is_control() || batch.is_transactional() {
            return Err(ApiError::new(
                ResponseError::InvalidRecord,
                "transactional and control batches are not supported yet",
            ));
        }
        if batch.producer_id() >= 0 && batches.len() > 1 {
            return Err(ApiError::new(
                ResponseError::InvalidRecord,
                "an idempotent producer sends exactly one batch per partition per request",
            ));
        }
    }
    let now = now_ms();
    let log_append_time_ms = if config.log_append_time() {
        batches = batches
            .iter()
            .map(|b| b.with_log_append_time(now))
            .collect();
        now
    } else {
        -1
    };
    let outcome = partition.append(&batches, 0, now).await?;
    let base_offset = match outcome {
        AppendOutcome::Appended { base_offset } | AppendOutcome::Duplicate { base_offset } => {
            base_offset
        }
        AppendOutcome::Rejected(error) => {
            let (code, message) = match error {
                SequenceError::InvalidEpoch => (
                    ResponseError::InvalidProducerEpoch,
                    "the producer's epoch is older than the current one: another instance took over",
                ),
                SequenceError::OutOfOrder => (
                    ResponseError::OutOfOrderSequenceNumber,
                    "the batch's sequence number does not follow the last one written",
                ),
                SequenceError::UnknownProducer => (
                    ResponseError::UnknownProducerId,
                    "this partition has no state for the producer id",
                ),
            };
            return Err(ApiError::new(code, message));
        }
    };
    Ok(Appended {
        base_offset,
        log_append_time_ms,
        log_start_offset: partition.log_start_offset(),
    })
}
