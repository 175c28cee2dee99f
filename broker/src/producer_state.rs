//! Idempotent producer state per partition: the sequence checks of Kafka's
//! `ProducerStateManager`, as a pure state machine.
//!
//! Each producer id keeps its epoch and the metadata of its last five batches, so a batch
//! retried after a lost response is recognised and answered with its original offsets
//! instead of being written twice.

use std::collections::{HashMap, VecDeque};

/// Batches remembered per producer: the most a producer has in flight with idempotence on.
pub const BATCHES_PER_PRODUCER: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    /// The batch's max timestamp (DescribeProducers' last timestamp).
    pub max_timestamp_ms: i64,
}

/// One producer as DescribeProducers shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// A retry of a batch already in the log: answer with its offsets, write nothing.
    Duplicate { first_offset: i64 },
    /// Refuse it with this Kafka error.
    Reject(SequenceError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceError {
    /// INVALID_PRODUCER_EPOCH: a zombie with an older epoch.
    InvalidEpoch,
    /// OUT_OF_ORDER_SEQUENCE_NUMBER: a gap or a new epoch not starting at 0.
    OutOfOrder,
    /// UNKNOWN_PRODUCER_ID: no state for the producer and a sequence past 0.
    UnknownProducer,
}

fn next_sequence(sequence: i32) -> i32 {
    // Sequences wrap to 0 after i32::MAX, as Kafka's DefaultRecordBatch.incrementSequence.
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

/// The last sequence of a batch that starts at `first` and holds `count` records.
pub fn last_sequence(first: i32, count: i64) -> i32 {
    let last = i64::from(first) + count.max(1) - 1;
    (last % (i64::from(i32::MAX) + 1)) as i32
}

#[derive(Debug, Default)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStateTable {
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_sequence: i32,
        last_sequence: i32,
    ) -> SequenceCheck {
        assert!(producer_id >= 0, "only idempotent batches are checked");
        let Some(entry) = self.producers.get(&producer_id) else {
            return if first_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::Reject(SequenceError::UnknownProducer)
            };
        };
        if epoch < entry.epoch {
            return SequenceCheck::Reject(SequenceError::InvalidEpoch);
        }
        if epoch > entry.epoch {
            return if first_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::Reject(SequenceError::OutOfOrder)
            };
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == first_sequence && b.last_sequence == last_sequence)
        {
            return SequenceCheck::Duplicate {
                first_offset: dup.first_offset,
            };
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |b| next_sequence(b.last_sequence));
        if first_sequence == expected {
            SequenceCheck::Append
        } else {
            SequenceCheck::Reject(SequenceError::OutOfOrder)
        }
    }

    /// Records an appended batch (also used to rebuild the table from the log).
    pub fn record(&mut self, producer_id: i64, epoch: i16, batch: BatchMeta) {
        let entry = self.producers.entry(producer_id).or_default();
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(batch);
        while entry.batches.len() > BATCHES_PER_PRODUCER {
            entry.batches.pop_front();
        }
    }

    /// Every producer with a batch in the table, by producer id.
    pub fn active(&self) -> Vec<ActiveProducer> {
        let mut active: Vec<ActiveProducer> = self
            .producers
            .iter()
            .filter_map(|(&producer_id, entry)| {
                let last = entry.batches.back()?;
                Some(ActiveProducer {
                    producer_id,
                    epoch: entry.epoch,
                    last_sequence: last.last_sequence,
                    last_timestamp_ms: last.max_timestamp_ms,
                })
            })
            .collect();
        active.sort_by_key(|p| p.producer_id);
        active
    }

    pub fn clear(&mut self) {
        self.producers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(first_sequence: i32, count: i32, first_offset: i64) -> BatchMeta {
        BatchMeta {
            first_sequence,
            last_sequence: last_sequence(first_sequence, i64::from(count)),
            first_offset,
            last_offset: first_offset + i64::from(count) - 1,
            max_timestamp_ms: 1_700_000_000_000 + first_offset,
        }
    }

    #[test]
    fn sequences_duplicates_gaps_and_epochs() {
        let mut table = ProducerStateTable::default();
        assert_eq!(table.check(7, 0, 0, 4), SequenceCheck::Append);
        assert_eq!(
            table.check(7, 0, 5, 9),
            SequenceCheck::Reject(SequenceError::UnknownProducer)
        );
        table.record(7, 0, meta(0, 5, 100));
        assert_eq!(
            table.check(7, 0, 0, 4),
            SequenceCheck::Duplicate { first_offset: 100 }
        );
        assert_eq!(table.check(7, 0, 5, 9), SequenceCheck::Append);
        assert_eq!(
            table.check(7, 0, 6, 9),
            SequenceCheck::Reject(SequenceError::OutOfOrder)
        );
        table.record(7, 1, meta(0, 1, 200));
        assert_eq!(
            table.check(7, 0, 1, 1),
            SequenceCheck::Reject(SequenceError::InvalidEpoch)
        );
        assert_eq!(
            table.check(7, 2, 3, 3),
            SequenceCheck::Reject(SequenceError::OutOfOrder)
        );
        assert_eq!(table.check(7, 2, 0, 0), SequenceCheck::Append);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_sequences_wrap() {
        let mut table = ProducerStateTable::default();
        for i in 0..7 {
            table.record(1, 0, meta(i, 1, i64::from(i)));
        }
        assert_eq!(
            table.check(1, 0, 1, 1),
            SequenceCheck::Reject(SequenceError::OutOfOrder),
            "batch 1 fell out of the window"
        );
        assert_eq!(
            table.check(1, 0, 6, 6),
            SequenceCheck::Duplicate { first_offset: 6 }
        );
        assert_eq!(last_sequence(i32::MAX, 2), 0);
        let mut table = ProducerStateTable::default();
        table.record(2, 0, meta(i32::MAX, 1, 0));
        assert_eq!(table.check(2, 0, 0, 0), SequenceCheck::Append);
    }
}
