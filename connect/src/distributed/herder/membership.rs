//! The worker's group membership loop: JoinGroup and SyncGroup rounds, then heartbeats
//! until the coordinator, the herder or the leader's scheduled delay asks for the next.

use std::time::Duration;

use runnel_actors::{Addr, Handler, Message};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{
    Assigned, DistributedWorker, GetLeadership, Lead, Leadership, Rebalancing, Snapshot,
    HERDER_ASK_MS, JOIN_BACKOFF_MS,
};
use crate::distributed::member::Member;
use crate::distributed::protocol::{decode_assignment, encode_metadata, version_of};
use crate::error::ConnectError;

async fn ask<M>(herder: &Addr<DistributedWorker>, msg: M) -> Option<M::Reply>
where
    DistributedWorker: Handler<M>,
    M: Message,
{
    herder
        .ask(msg, Duration::from_millis(HERDER_ASK_MS))
        .await
        .ok()
}

/// One JoinGroup and SyncGroup round; the assignment's scheduled delay, if any.
async fn rebalance(
    member: &mut Member,
    herder: &Addr<DistributedWorker>,
    protocols: &[&'static str],
) -> Result<Option<Duration>, ConnectError> {
    let _ = ask(herder, Rebalancing).await;
    let state = ask(herder, Snapshot)
        .await
        .ok_or_else(|| ConnectError::Worker("the herder is gone".into()))?;
    let offered: Vec<(&str, Vec<u8>)> = protocols
        .iter()
        .filter_map(|p| version_of(p).map(|v| (*p, encode_metadata(&state, v))))
        .collect();
    let joined = member.join(&offered).await?;
    let assignments = if joined.leader_id == joined.member_id {
        ask(
            herder,
            Lead {
                generation: joined.generation,
                leader_id: joined.leader_id.clone(),
                protocol: joined.protocol.clone(),
                members: joined.members.clone(),
            },
        )
        .await
        .ok_or_else(|| ConnectError::Worker("the herder is gone".into()))??
    } else {
        Vec::new()
    };
    let bytes = member.sync(&joined.protocol, assignments).await?;
    let assignment = decode_assignment(&bytes).map_err(|e| ConnectError::Worker(e.to_string()))?;
    let delay =
        (assignment.delay_ms > 0).then(|| Duration::from_millis(assignment.delay_ms as u64));
    // Told, not asked: heartbeats go on while the herder stops and starts work (Kafka's
    // heartbeat thread does the same), and the next round's Snapshot queues behind it.
    herder
        .tell(Assigned {
            generation: joined.generation,
            member_id: joined.member_id,
            assignment,
        })
        .await
        .map_err(|_| ConnectError::Worker("the herder is gone".into()))?;
    Ok(delay)
}

/// The worker's group membership: rebalance, then heartbeat until the coordinator, the
/// herder or the scheduled delay asks for the next round. Leaves the group on stop.
pub(crate) async fn run_member(
    mut member: Member,
    herder: Addr<DistributedWorker>,
    protocols: Vec<&'static str>,
    mut rejoin: mpsc::Receiver<&'static str>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let heartbeat = Duration::from_millis(member.heartbeat_interval_ms());
    loop {
        if *stop.borrow() || !herder.is_alive() {
            break;
        }
        // A rejoin asked for before this round is answered by it.
        while rejoin.try_recv().is_ok() {}
        let scheduled = match rebalance(&mut member, &herder, &protocols).await {
            Ok(delay) => delay.map(|d| Instant::now() + d),
            Err(e) => {
                tracing::info!(error = %e, "rebalance failed; joining again");
                if let ConnectError::Kafka(k) = &e {
                    if runnel_client::kafka::coordinator::needs_new_coordinator(k) {
                        member.lose_coordinator();
                    }
                }
                tokio::time::sleep(Duration::from_millis(JOIN_BACKOFF_MS)).await;
                continue;
            }
        };
        loop {
            let until_scheduled = scheduled.map(|s| s.saturating_duration_since(Instant::now()));
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                reason = rejoin.recv() => {
                    tracing::debug!(reason = reason.unwrap_or("herder gone"), "rejoining");
                    break;
                }
                _ = tokio::time::sleep(until_scheduled.unwrap_or(heartbeat)), if until_scheduled.is_some() => {
                    tracing::debug!("scheduled rebalance");
                    break;
                }
                _ = tokio::time::sleep(heartbeat) => {
                    if let Err(e) = member.heartbeat().await {
                        tracing::debug!(error = %e, "heartbeat: rejoining");
                        if runnel_client::kafka::coordinator::needs_new_coordinator(&e) {
                            member.lose_coordinator();
                        }
                        if matches!(e.code(), Some(runnel_client::kafka::error::ResponseError::UnknownMemberId)) {
                            member.member_id.clear();
                        }
                        break;
                    }
                }
            }
        }
    }
    if let Err(e) = member.leave().await {
        tracing::debug!(error = %e, "leaving the connect group failed");
    }
}

/// The URL of whoever leads, for REST forwarding.
pub(crate) async fn leadership(addr: &Addr<DistributedWorker>) -> Leadership {
    ask(addr, GetLeadership)
        .await
        .unwrap_or(Leadership::Rebalancing)
}
