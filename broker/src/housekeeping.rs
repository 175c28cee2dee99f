//! The broker's periodic work, as two actors driven by their own timers, so a panic is a
//! restart by the supervisor, never a silent stop:
//!
//! - [`GroupTimers`] steps the group coordinator every 100 ms (sessions, rebalance and sync
//!   deadlines, KIP-848 topic changes) and expires offsets at
//!   `offsets.retention.check.interval.ms`.
//! - [`LogHousekeeper`] flushes by `flush.ms`, applies retention at
//!   `log.retention.check.interval.ms` and compacts at `log.cleaner.backoff.ms`.
//!
//! They are two actors so that a slow compaction never delays a group's session expiry.

use std::sync::Arc;
use std::time::Duration;

use runnel_actors::{Actor, ActorError, Context, Handler, Message};

use crate::partition::{Partition, PartitionError};
use crate::{now_ms, Broker};

/// Group timers are checked this often.
pub const GROUP_TICK_INTERVAL_MS: u64 = 100;
/// Log housekeeping (flush.ms checks) runs this often.
pub const LOG_TICK_INTERVAL_MS: u64 = 1000;
/// Ticks queue behind a slow one rather than pile up: the timer waits for room.
pub const MAILBOX_CAPACITY: usize = 4;

/// A timer's message.
#[derive(Debug, Clone, Copy)]
pub struct Tick;

impl Message for Tick {
    type Reply = ();
}

/// Ends the actor for good (the ordered shutdown stops timers before it flushes).
#[derive(Debug)]
pub struct Stop;

impl Message for Stop {
    type Reply = ();
}

pub struct GroupTimers {
    broker: Arc<Broker>,
    since_offsets_expiry_ms: i64,
}

impl GroupTimers {
    pub fn new(broker: Arc<Broker>) -> Self {
        GroupTimers {
            broker,
            since_offsets_expiry_ms: 0,
        }
    }
}

impl Actor for GroupTimers {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), ActorError> {
        ctx.notify_interval(Duration::from_millis(GROUP_TICK_INTERVAL_MS), Tick);
        Ok(())
    }
}

impl Handler<Tick> for GroupTimers {
    async fn handle(&mut self, _tick: Tick, _ctx: &mut Context<Self>) {
        self.since_offsets_expiry_ms += GROUP_TICK_INTERVAL_MS as i64;
        let expire =
            self.since_offsets_expiry_ms >= self.broker.config.offsets_retention_check_interval_ms;
        if expire {
            self.since_offsets_expiry_ms = 0;
        }
        self.broker
            .groups
            .tick(&self.broker, now_ms(), expire)
            .await;
    }
}

impl Handler<Stop> for GroupTimers {
    async fn handle(&mut self, _stop: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

pub struct LogHousekeeper {
    broker: Arc<Broker>,
    since_retention_ms: u64,
    since_cleaning_ms: u64,
}

impl LogHousekeeper {
    pub fn new(broker: Arc<Broker>) -> Self {
        LogHousekeeper {
            broker,
            since_retention_ms: 0,
            since_cleaning_ms: 0,
        }
    }
}

impl Actor for LogHousekeeper {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), ActorError> {
        ctx.notify_interval(Duration::from_millis(LOG_TICK_INTERVAL_MS), Tick);
        Ok(())
    }
}

impl Handler<Tick> for LogHousekeeper {
    async fn handle(&mut self, _tick: Tick, _ctx: &mut Context<Self>) {
        self.since_retention_ms += LOG_TICK_INTERVAL_MS;
        self.since_cleaning_ms += LOG_TICK_INTERVAL_MS;
        let config = &self.broker.config;
        let retention = self.since_retention_ms >= config.log_retention_check_interval_ms;
        let cleaning = self.since_cleaning_ms >= config.log_cleaner_backoff_ms;
        if retention {
            self.since_retention_ms = 0;
        }
        if cleaning {
            self.since_cleaning_ms = 0;
        }
        for partition in self.broker.all_partitions() {
            if partition.is_offline() {
                continue;
            }
            if let Err(e) = maintain(&partition, retention, cleaning).await {
                tracing::warn!(partition = %partition.tp, error = %e, "log housekeeping failed");
            }
        }
    }
}

impl Handler<Stop> for LogHousekeeper {
    async fn handle(&mut self, _stop: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// One partition's flush, retention and compaction, each a change through its actor.
async fn maintain(
    partition: &Partition,
    retention: bool,
    cleaning: bool,
) -> Result<(), PartitionError> {
    let now = now_ms();
    partition.flush(false, now).await?;
    if retention {
        partition.apply_retention(now).await?;
    }
    let input = {
        let view = partition.view().await;
        if cleaning && view.log.config().cleanup_policy.compact {
            view.log.compaction_input()
        } else {
            None
        }
    };
    // Cleaning reads closed segments off the actor, so appends and fetches go on; only
    // the swap at the end is a change.
    if let Some(input) = input {
        let plan = input.clean(now).await.map_err(PartitionError::Log)?;
        partition.apply_compaction(plan, now).await?;
    }
    Ok(())
}
