//! The partition actor: the one writer of a partition's state. Its mailbox orders every
//! change; a restart after a failure recovers the log from disk in `started`.

use std::sync::Arc;

use runnel_actors::{Actor, ActorError, Context, Handler, Message};
use runnel_protocol::batch::RecordBatch;
use runnel_storage::log::CompactionPlan;

use super::{
    last_sequence, lock, AppendOutcome, PartitionConfig, PartitionError, PartitionState,
    SequenceCheck, Shared,
};
use crate::now_ms;

/// A change to the partition.
pub(super) enum Write {
    Append {
        batches: Vec<RecordBatch>,
        leader_epoch: i32,
        now_ms: i64,
    },
    Flush {
        all: bool,
        now_ms: i64,
    },
    Retention {
        now_ms: i64,
    },
    ApplyCompaction {
        plan: CompactionPlan,
        now_ms: i64,
    },
    DeleteRecords {
        offset: i64,
    },
    SetConfig(PartitionConfig),
    /// Fault injection: panic, as a bug in a handler would.
    Crash,
}

/// What a change answers.
#[derive(Debug)]
pub(super) enum Done {
    Appended(AppendOutcome),
    LowWatermark(i64),
    Nothing,
    /// Inside the actor only: a flush was asked and `due` says whether one is needed.
    Flush {
        due: bool,
    },
}

impl Done {
    pub(super) fn expect_append(self) -> AppendOutcome {
        match self {
            Done::Appended(outcome) => outcome,
            other => unreachable!("an append answers Appended, not {other:?}"),
        }
    }

    pub(super) fn expect_low_watermark(self) -> i64 {
        match self {
            Done::LowWatermark(offset) => offset,
            other => unreachable!("DeleteRecords answers LowWatermark, not {other:?}"),
        }
    }
}

impl Message for Write {
    type Reply = Result<Done, PartitionError>;
}

pub(super) struct PartitionActor {
    shared: Arc<Shared>,
    /// Recover the log from disk before the first change: this life follows a failure.
    recover: bool,
}

impl PartitionActor {
    pub(super) fn new(shared: Arc<Shared>, recover: bool) -> Self {
        PartitionActor { shared, recover }
    }

    /// Fault injection (see [`crate::faults`]).
    fn should_crash(&self) -> bool {
        crate::faults::should_crash(self.shared.crash_probability)
    }

    async fn apply(
        &mut self,
        state: &mut PartitionState,
        change: Write,
    ) -> Result<Done, PartitionError> {
        match change {
            Write::Append {
                batches,
                leader_epoch,
                now_ms,
            } => self.append(state, &batches, leader_epoch, now_ms).await,
            // The fsyncs themselves run in `handle`, with readers let in.
            Write::Flush { all, now_ms } => Ok(Done::Flush {
                due: all || state.log.flush_ms_due(now_ms),
            }),
            Write::Retention { now_ms } => {
                state.log.apply_retention(now_ms).await?;
                Ok(Done::Nothing)
            }
            Write::ApplyCompaction { plan, now_ms } => {
                state.log.apply_compaction(plan, now_ms).await?;
                Ok(Done::Nothing)
            }
            Write::DeleteRecords { offset } => delete_records(state, offset).await,
            Write::SetConfig(config) => {
                state.log.set_config(config.log.clone());
                *lock(&self.shared.config) = config;
                Ok(Done::Nothing)
            }
            Write::Crash => panic!("partition {} crashed by fault injection", self.shared.tp),
        }
    }

    async fn append(
        &mut self,
        state: &mut PartitionState,
        batches: &[RecordBatch],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<Done, PartitionError> {
        // Clients send one batch per partition per request; several are checked as a run.
        let first = &batches[0];
        if first.producer_id() >= 0 {
            let count: i64 = batches
                .iter()
                .map(|b| i64::from(b.last_offset_delta()) + 1)
                .sum();
            let last = last_sequence(first.base_sequence(), count);
            match state.producers.check(
                first.producer_id(),
                first.producer_epoch(),
                first.base_sequence(),
                last,
            ) {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate { first_offset } => {
                    return Ok(Done::Appended(AppendOutcome::Duplicate {
                        base_offset: first_offset,
                    }))
                }
                SequenceCheck::Reject(error) => {
                    return Ok(Done::Appended(AppendOutcome::Rejected(error)))
                }
            }
        }
        let info = state
            .log
            .write_batches(batches, leader_epoch, now_ms)
            .await?;
        if self.should_crash() {
            // The worst moment: written, not yet in the producer table nor published.
            panic!(
                "partition {} crashed by fault injection mid-append",
                self.shared.tp
            );
        }
        let mut offset = info.first_offset;
        for batch in batches {
            let last_offset = offset + i64::from(batch.last_offset_delta());
            state.note_batch(batch, offset, last_offset);
            offset = last_offset + 1;
        }
        Ok(Done::Appended(AppendOutcome::Appended {
            base_offset: info.first_offset,
        }))
    }
}

async fn delete_records(state: &mut PartitionState, offset: i64) -> Result<Done, PartitionError> {
    let high_watermark = state.log.log_end_offset();
    let target = if offset == -1 { high_watermark } else { offset };
    if target < 0 || target > high_watermark {
        return Err(PartitionError::Log(
            runnel_storage::log::LogError::OffsetOutOfRange {
                offset,
                log_start_offset: state.log.log_start_offset(),
                log_end_offset: high_watermark,
            },
        ));
    }
    let low_watermark = state.log.delete_records_before(target).await?;
    Ok(Done::LowWatermark(low_watermark))
}

impl Actor for PartitionActor {
    async fn started(&mut self, _ctx: &mut Context<Self>) -> Result<(), ActorError> {
        if !self.recover {
            return Ok(());
        }
        let shared = &self.shared;
        let config = lock(&shared.config).log.clone();
        let mut state = shared.state.write().await;
        let fresh = PartitionState::open(shared.disk.clone(), &shared.dir, config, now_ms())
            .await
            .map_err(|e| {
                ActorError::new(format!("recovery of partition {} failed: {e}", shared.tp))
            })?;
        *state = fresh;
        shared.publish(&state);
        tracing::info!(partition = %shared.tp, log_end_offset = state.log.log_end_offset(), "partition recovered after a failure");
        self.recover = false;
        Ok(())
    }
}

impl Handler<Write> for PartitionActor {
    async fn handle(
        &mut self,
        change: Write,
        _ctx: &mut Context<Self>,
    ) -> Result<Done, PartitionError> {
        let shared = self.shared.clone();
        shared.check_online()?;
        let mut state = shared.state.write().await;
        let mut result = self.apply(&mut state, change).await;
        let flush = match &result {
            Ok(Done::Flush { due }) => *due,
            Ok(Done::Appended(AppendOutcome::Appended { .. })) => state.log.flush_messages_due(),
            _ => false,
        };
        if flush {
            // Fetches keep reading while the disk syncs: the actor, the only writer, holds
            // the view shared, so nothing changes under the fsyncs. What it covers is
            // published (and acknowledged) only once it is durable, as Kafka does.
            let plan = match state.log.plan_flush().await {
                Ok(plan) => Some(plan),
                Err(e) => {
                    result = Err(e.into());
                    None
                }
            };
            if let Some(plan) = plan {
                let reading = state.downgrade();
                let synced = reading.log.sync(&plan).await;
                drop(reading);
                state = shared.state.write().await;
                match synced {
                    Ok(()) => state.log.finish_flush(plan),
                    Err(e) => result = Err(e.into()),
                }
            }
        }
        if let Ok(Done::Flush { .. }) = result {
            result = Ok(Done::Nothing);
        }
        if let Err(PartitionError::Log(e)) = &result {
            shared.take_offline_on(e);
        }
        shared.publish(&state);
        result
    }
}
