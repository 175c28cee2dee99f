//! Produce: each partition's record batches go to its leader's append
//! ([`crate::partition::Partition::append_as_leader`]), which checks them and stores them.
//!
//! The broker checks batch headers and CRCs but decodes records only when the topic's
//! `compression.type` names another codec than the producer's, or when the topic is
//! compacted (every record needs a key there), so with the default (`producer`) batches are
//! stored exactly as sent. Errors are per partition; one bad partition does not fail the
//! others, and records refused one by one are listed in `record_errors` (v8+), as Kafka
//! lists them. acks=0 gets no response at all.

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::group::coordinator::OFFSETS_TOPIC;
use crate::partition::{AppendRefused, Appended};
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
                Some(error) => Err(AppendRefused::from(error.clone())),
                None => append(broker, &name, data.index, data.records).await,
            };
            let response = PartitionProduceResponse::default().with_index(data.index);
            partitions.push(match result {
                Ok(done) => response
                    .with_base_offset(done.base_offset)
                    .with_log_append_time_ms(done.log_append_time_ms)
                    .with_log_start_offset(done.log_start_offset),
                Err(AppendRefused {
                    error,
                    record_errors,
                }) => response
                    .with_error_code(error.code.code())
                    .with_base_offset(-1)
                    .with_log_append_time_ms(-1)
                    // Kafka names the log start with a refusal of single records.
                    .with_log_start_offset(if record_errors.is_empty() {
                        -1
                    } else {
                        broker
                            .partition(&name, data.index)
                            .map_or(-1, |p| p.log_start_offset())
                    })
                    .with_error_message(Some(StrBytes::from_string(error.message)))
                    .with_record_errors(
                        record_errors
                            .into_iter()
                            .map(|e| {
                                BatchIndexAndErrorMessage::default()
                                    .with_batch_index(e.batch_index)
                                    .with_batch_index_error_message(Some(StrBytes::from_string(
                                        e.message,
                                    )))
                            })
                            .collect(),
                    ),
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

async fn append(
    broker: &Broker,
    topic: &str,
    index: i32,
    records: Option<Bytes>,
) -> Result<Appended, AppendRefused> {
    let image = broker.image();
    let unknown = || {
        ApiError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("this broker has no partition {topic}-{index}"),
        )
    };
    if !image.topics.contains_key(topic) {
        return Err(unknown().into());
    }
    if topic == OFFSETS_TOPIC {
        // Kafka's rule too: clients never write the coordinator's records.
        return Err(ApiError::new(
            ResponseError::InvalidTopicException,
            format!("cannot append to the internal topic {OFFSETS_TOPIC}"),
        )
        .into());
    }
    let partition = broker.serving(topic, index)?;
    let records = records.unwrap_or_default();
    // Kafka's ProduceRequest rule: v3 and later carry only magic v2 batches. The magic
    // byte sits at offset 16 in every message format.
    if let Some(&magic) = records.get(16) {
        if magic < 2 {
            return Err(ApiError::new(
                ResponseError::InvalidRecord,
                format!(
                    "partition {topic}-{index}: a record batch in message format v{magic}; Produce v3 and later take only v2 batches, so upgrade the client"
                ),
            )
            .into());
        }
    }
    partition.append_as_leader(records, now_ms()).await
}
