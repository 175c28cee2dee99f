//! Fetch: whole batches from each partition's fetch offset, with long polling.
//!
//! The response waits up to `max_wait_ms` until `min_bytes` are available. It stays under
//! `max_bytes` and each partition under its `partition_max_bytes`, except that the first
//! partition with data always returns at least one whole batch (Kafka's rule, so a batch
//! larger than the limits never blocks a consumer). Fetch sessions (KIP-227) let later
//! requests name only what changed; see [`crate::fetch_session`].

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;
use runnel_protocol::kafka::topic_name;
use tokio::sync::watch;

use crate::fetch_session::{SessionKey, SessionPartition, SessionRequest};
use crate::{now_ms, ApiError, Broker};

/// The longest a fetch may wait, whatever it asks: keeps a client's typo from parking a
/// connection for hours.
const MAX_WAIT_CAP_MS: i64 = 60_000;

/// One partition to read in this request.
struct Wanted {
    key: SessionKey,
    topic_id: uuid::Uuid,
    fetch_offset: i64,
    max_bytes: i32,
    current_leader_epoch: i32,
}

/// One partition's answer before it is encoded.
struct Answer {
    key: SessionKey,
    topic_id: uuid::Uuid,
    /// A Kafka error code, 0 for none.
    error: i16,
    high_watermark: i64,
    log_start_offset: i64,
    records: Bytes,
}

pub async fn handle(broker: &Broker, request: FetchRequest, version: i16) -> FetchResponse {
    let by_id = version >= 13;
    let read_committed = request.isolation_level == 1;
    let image = broker.image();
    let mut wanted = Vec::new();
    let mut unknown: Vec<(SessionKey, uuid::Uuid, ResponseError)> = Vec::new();
    for topic in &request.topics {
        let name = if by_id {
            image.topic_names.get(&topic.topic_id).cloned()
        } else {
            Some(topic.topic.0.to_string())
        };
        for p in &topic.partitions {
            match &name {
                Some(name) => wanted.push(Wanted {
                    key: (name.clone(), p.partition),
                    topic_id: image.topics.get(name).map_or(topic.topic_id, |t| t.id),
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes,
                    current_leader_epoch: p.current_leader_epoch,
                }),
                None => unknown.push((
                    (String::new(), p.partition),
                    topic.topic_id,
                    ResponseError::UnknownTopicId,
                )),
            }
        }
    }

    // Resolve the session: which partitions to read, and whether to send all of them.
    let session = match SessionRequest::classify(version, request.session_id, request.session_epoch)
    {
        Ok(session) => session,
        Err(code) => return FetchResponse::default().with_error_code(code.code()),
    };
    let (session_id, incremental) = {
        let mut cache = broker.fetch_sessions.lock().expect("fetch session lock");
        match session {
            SessionRequest::Sessionless => (0, false),
            SessionRequest::Close { id } => {
                cache.close(id);
                (0, false)
            }
            SessionRequest::Open => {
                let partitions = wanted
                    .iter()
                    .map(|w| (w.key.clone(), session_partition(w)))
                    .collect();
                (cache.open(partitions), false)
            }
            SessionRequest::Continue { id, epoch } => {
                let session = match cache.get(id, epoch) {
                    Ok(session) => session,
                    Err(code) => return FetchResponse::default().with_error_code(code.code()),
                };
                for w in &wanted {
                    let entry = session
                        .partitions
                        .entry(w.key.clone())
                        .or_insert_with(|| session_partition(w));
                    entry.fetch_offset = w.fetch_offset;
                    entry.max_bytes = w.max_bytes;
                }
                for forgotten in &request.forgotten_topics_data {
                    let name = if by_id {
                        image.topic_names.get(&forgotten.topic_id).cloned()
                    } else {
                        Some(forgotten.topic.0.to_string())
                    };
                    if let Some(name) = name {
                        for p in &forgotten.partitions {
                            session.partitions.remove(&(name.clone(), *p));
                        }
                    }
                }
                // Read everything in the session, at the offsets it remembers.
                wanted = session
                    .partitions
                    .iter()
                    .map(|(key, p)| Wanted {
                        key: key.clone(),
                        topic_id: image.topics.get(&key.0).map_or(uuid::Uuid::nil(), |t| t.id),
                        fetch_offset: p.fetch_offset,
                        max_bytes: p.max_bytes,
                        current_leader_epoch: -1,
                    })
                    .collect();
                (id, true)
            }
        }
    };

    let max_wait_ms = i64::from(request.max_wait_ms).clamp(0, MAX_WAIT_CAP_MS);
    let deadline_ms = now_ms() + max_wait_ms;
    // Watches taken before the first read, so no append between read and wait is missed.
    let mut watches: Vec<watch::Receiver<i64>> = wanted
        .iter()
        .filter_map(|w| broker.partition(&w.key.0, w.key.1))
        .map(|p| p.watch_high_watermark())
        .collect();
    let answers = loop {
        for watch in &mut watches {
            watch.borrow_and_update();
        }
        let answers = read_all(broker, &wanted, request.max_bytes).await;
        let bytes: usize = answers.iter().map(|a| a.records.len()).sum();
        let errors = answers.iter().any(|a| a.error != 0);
        let remaining_ms = deadline_ms - now_ms();
        if bytes >= request.min_bytes.max(0) as usize || errors || remaining_ms <= 0 {
            break answers;
        }
        // Wake when a partition this fetch reads moves its high watermark.
        let wait = Duration::from_millis(remaining_ms as u64);
        if tokio::time::timeout(wait, any_moved(&mut watches))
            .await
            .is_err()
        {
            break read_all(broker, &wanted, request.max_bytes).await;
        }
    };

    // Keep only what changed for an incremental response, and remember what was sent.
    let mut kept = Vec::with_capacity(answers.len());
    {
        let mut cache = broker.fetch_sessions.lock().expect("fetch session lock");
        let session = if session_id != 0 {
            let epoch = if incremental {
                request.session_epoch
            } else {
                1
            };
            cache.get(session_id, epoch).ok()
        } else {
            None
        };
        match session {
            Some(session) => {
                for answer in answers {
                    let Some(entry) = session.partitions.get_mut(&answer.key) else {
                        continue;
                    };
                    let news = !answer.records.is_empty()
                        || answer.error != 0
                        || answer.high_watermark != entry.sent_high_watermark
                        || answer.log_start_offset != entry.sent_log_start_offset;
                    entry.sent_high_watermark = answer.high_watermark;
                    entry.sent_log_start_offset = answer.log_start_offset;
                    if news || !incremental {
                        kept.push(answer);
                    }
                }
                if incremental {
                    session.advance();
                }
            }
            None => kept = answers,
        }
    }

    let mut topics: BTreeMap<String, FetchableTopicResponse> = BTreeMap::new();
    let mut order = Vec::new();
    for answer in kept {
        let topic = topics.entry(answer.key.0.clone()).or_insert_with(|| {
            order.push(answer.key.0.clone());
            FetchableTopicResponse::default()
                .with_topic(topic_name(&answer.key.0))
                .with_topic_id(answer.topic_id)
        });
        topic.partitions.push(
            PartitionData::default()
                .with_partition_index(answer.key.1)
                .with_error_code(answer.error)
                .with_high_watermark(answer.high_watermark)
                .with_last_stable_offset(answer.high_watermark)
                .with_log_start_offset(answer.log_start_offset)
                // Kafka sends null to read_uncommitted fetchers (and with most errors), and
                // the (empty: no transactions yet) list to read_committed ones.
                .with_aborted_transactions(
                    (read_committed
                        || answer.error == ResponseError::UnknownTopicOrPartition.code())
                    .then(Vec::new),
                )
                .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1))
                .with_records(Some(answer.records)),
        );
    }
    let mut responses: Vec<FetchableTopicResponse> = order
        .into_iter()
        .filter_map(|name| topics.remove(&name))
        .collect();
    for ((_, index), topic_id, code) in unknown {
        responses.push(
            FetchableTopicResponse::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![PartitionData::default()
                    .with_partition_index(index)
                    .with_error_code(code.code())
                    .with_high_watermark(-1)
                    .with_last_stable_offset(-1)
                    .with_log_start_offset(-1)]),
        );
    }
    FetchResponse::default()
        .with_session_id(session_id)
        .with_responses(responses)
}

/// Returns once one of `watches` sees a change; never, if none can (no partition, or
/// all deleted), so the deadline ends the wait.
async fn any_moved(watches: &mut [watch::Receiver<i64>]) {
    if watches.is_empty() {
        return std::future::pending().await;
    }
    let changes = watches.iter_mut().map(|w| Box::pin(w.changed()));
    let (changed, _, _) = futures::future::select_all(changes).await;
    if changed.is_err() {
        // That partition was deleted; its answer changes, so read again.
        tracing::debug!("a partition of a parked fetch went away");
    }
}

fn session_partition(w: &Wanted) -> SessionPartition {
    SessionPartition {
        fetch_offset: w.fetch_offset,
        max_bytes: w.max_bytes,
        sent_high_watermark: -1,
        sent_log_start_offset: -1,
    }
}

async fn read_all(broker: &Broker, wanted: &[Wanted], max_bytes: i32) -> Vec<Answer> {
    let mut budget = max_bytes.max(0) as usize;
    let mut any = false;
    let mut answers = Vec::with_capacity(wanted.len());
    for w in wanted {
        let answer = match read_one(broker, w, budget, any).await {
            Ok(answer) => answer,
            Err(error) => {
                if error.code == ResponseError::KafkaStorageError {
                    tracing::warn!(partition = %format!("{}-{}", w.key.0, w.key.1), error = %error.message, "fetch failed");
                }
                Answer {
                    key: w.key.clone(),
                    topic_id: w.topic_id,
                    error: error.code.code(),
                    high_watermark: -1,
                    log_start_offset: -1,
                    records: Bytes::new(),
                }
            }
        };
        budget = budget.saturating_sub(answer.records.len());
        any |= !answer.records.is_empty();
        answers.push(answer);
    }
    answers
}

async fn read_one(
    broker: &Broker,
    w: &Wanted,
    budget: usize,
    any: bool,
) -> Result<Answer, ApiError> {
    let (topic, index) = (&w.key.0, w.key.1);
    let partition = broker.serving(topic, index)?;
    // KIP-320: this broker's leader epoch is always 0 on a single node.
    if w.current_leader_epoch > 0 {
        return Err(ApiError::new(
            ResponseError::UnknownLeaderEpoch,
            "epoch from the future",
        ));
    }
    partition.note_fetch_poll();
    let high_watermark = partition.high_watermark();
    let log_start_offset = partition.log_start_offset();
    let mut answer = Answer {
        key: w.key.clone(),
        topic_id: w.topic_id,
        error: 0,
        high_watermark,
        log_start_offset,
        records: Bytes::new(),
    };
    if w.fetch_offset < log_start_offset || w.fetch_offset > high_watermark {
        // As Kafka: an out-of-range answer carries no offsets (-1); the client asks
        // ListOffsets where to reset to.
        answer.error = ResponseError::OffsetOutOfRange.code();
        answer.high_watermark = -1;
        answer.log_start_offset = -1;
        return Ok(answer);
    }
    let limit = (w.max_bytes.max(0) as usize).min(budget);
    if w.fetch_offset == high_watermark || (limit == 0 && any) {
        return Ok(answer);
    }
    // `read` returns at least one whole batch; only the first partition with data may
    // exceed the limits that way.
    let records = partition.read(w.fetch_offset, limit.max(1)).await?;
    if any && records.len() > limit {
        return Ok(answer);
    }
    answer.records = records;
    Ok(answer)
}
