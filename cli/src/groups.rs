//! `runnel groups`: list, describe and delete consumer groups, and reset their committed
//! offsets, with the output of Kafka's kafka-consumer-groups.sh.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context as _};
use clap::Subcommand;
use runnel_client::kafka::{Admin, GroupDescription, KafkaError, OffsetSpec, TopicPartition};
use runnel_protocol::kafka::ResponseError;

use crate::kafka_args::BootstrapArgs;

/// List, describe and delete consumer groups; reset their offsets.
#[derive(clap::Args)]
pub struct GroupsArgs {
    #[command(subcommand)]
    action: GroupsAction,
    #[command(flatten)]
    bootstrap: BootstrapArgs,
}

#[derive(Subcommand)]
enum GroupsAction {
    /// List group ids, one per line; with --state, a GROUP and STATE table.
    List {
        /// Only groups in these states (Empty, PreparingRebalance, CompletingRebalance,
        /// Stable, Dead; Assigning and Reconciling for KIP-848 groups), comma-separated;
        /// without a value, every group with its state.
        #[arg(long, value_name = "STATES", num_args = 0..=1, default_missing_value = "")]
        state: Option<String>,
    },
    /// Show a group's partitions with committed offset, log end offset and lag, and which
    /// member owns each; --members and --state show members and the group instead.
    Describe {
        /// The group id.
        group: String,
        /// One line per member: id, host, client id, partition count and assignment.
        #[arg(long, conflicts_with = "state")]
        members: bool,
        /// The group's coordinator, assignor, state and member count.
        #[arg(long)]
        state: bool,
    },
    /// Move a group's committed offsets; the group must have no active members.
    ResetOffsets {
        /// The group id.
        group: String,
        /// The topic, or TOPIC:P,P,... for some of its partitions; repeatable.
        #[arg(long = "topic", value_name = "TOPIC[:PARTITIONS]", required = true)]
        topics: Vec<String>,
        /// To each partition's earliest offset.
        #[arg(long, group = "target")]
        to_earliest: bool,
        /// To each partition's end (the offset the next record gets).
        #[arg(long, group = "target")]
        to_latest: bool,
        /// To this offset (kept between the earliest and latest offsets).
        #[arg(long, value_name = "N", group = "target")]
        to_offset: Option<i64>,
        /// To the first offset at or after a time, like 2026-11-25T10:00:00Z (or
        /// 2026-11-25T10:00:00.000+01:00).
        #[arg(long, value_name = "DATETIME", group = "target")]
        to_datetime: Option<String>,
        /// Only show the new offsets; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete groups that have no active members, and their committed offsets.
    Delete {
        /// The group id(s).
        #[arg(required = true)]
        groups: Vec<String>,
    },
}

pub async fn run(args: GroupsArgs) -> anyhow::Result<()> {
    let admin = Admin::connect(args.bootstrap.client_config("runnel-groups")).await?;
    match args.action {
        GroupsAction::List { state } => list(&admin, state).await,
        GroupsAction::Describe {
            group,
            members,
            state,
        } => {
            let description = admin.describe_group(&group).await?;
            // Kafka describes a group it does not know as Dead with no members.
            if description.state == "Dead" && description.members.is_empty() {
                bail!("consumer group '{group}' does not exist; see `runnel groups list`");
            }
            if state {
                describe_state(&admin, &description).await
            } else if members {
                describe_members(&description);
                Ok(())
            } else {
                describe_offsets(&admin, &description).await
            }
        }
        GroupsAction::ResetOffsets {
            group,
            topics,
            to_earliest,
            to_latest,
            to_offset,
            to_datetime,
            dry_run,
        } => {
            let target = match (to_earliest, to_latest, to_offset, to_datetime) {
                (true, _, _, _) => Target::Earliest,
                (_, true, _, _) => Target::Latest,
                (_, _, Some(n), _) => Target::Offset(n),
                (_, _, _, Some(when)) => Target::Timestamp(parse_datetime(&when)?),
                _ => bail!(
                    "say where to: --to-earliest, --to-latest, --to-offset N or --to-datetime DATETIME"
                ),
            };
            reset_offsets(&admin, &group, &topics, target, dry_run).await
        }
        GroupsAction::Delete { groups } => {
            let mut failed = Vec::new();
            let mut deleted = Vec::new();
            for (group, result) in admin.delete_groups(&groups).await {
                match result {
                    Ok(()) => deleted.push(group),
                    Err(e) => failed.push((group, e)),
                }
            }
            if !deleted.is_empty() {
                println!(
                    "Deletion of requested consumer groups ({}) was successful.",
                    quoted(&deleted)
                );
            }
            if failed.is_empty() {
                return Ok(());
            }
            for (group, e) in &failed {
                eprintln!(
                    "Group '{group}' could not be deleted: {}",
                    explain_delete(e)
                );
            }
            bail!(
                "{} of {} groups could not be deleted",
                failed.len(),
                groups.len()
            )
        }
    }
}

async fn list(admin: &Admin, state: Option<String>) -> anyhow::Result<()> {
    let Some(state) = state else {
        for g in admin.list_groups(&[]).await? {
            println!("{}", g.group_id);
        }
        return Ok(());
    };
    let states: Vec<String> = state
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(canonical_state)
        .collect::<anyhow::Result<_>>()?;
    let groups = admin.list_groups(&states).await?;
    let rows: Vec<Vec<String>> = groups
        .into_iter()
        .map(|g| vec![g.group_id, g.state.unwrap_or_else(|| "Unknown".into())])
        .collect();
    print_table(&["GROUP", "STATE"], &rows);
    Ok(())
}

/// Classic groups' states, then those only KIP-848 consumer groups have.
const STATES: [&str; 7] = [
    "Empty",
    "PreparingRebalance",
    "CompletingRebalance",
    "Stable",
    "Dead",
    "Assigning",
    "Reconciling",
];

fn canonical_state(s: &str) -> anyhow::Result<String> {
    STATES
        .iter()
        .find(|known| known.eq_ignore_ascii_case(s))
        .map(|k| k.to_string())
        .with_context(|| {
            format!(
                "{s:?} is not a group state; use one of {}",
                STATES.join(", ")
            )
        })
}

/// Who owns each partition, from the members' assignments.
fn owners(description: &GroupDescription) -> BTreeMap<TopicPartition, usize> {
    let mut owners = BTreeMap::new();
    for (i, m) in description.members.iter().enumerate() {
        for tp in &m.assignment {
            owners.insert(tp.clone(), i);
        }
    }
    owners
}

async fn describe_offsets(admin: &Admin, description: &GroupDescription) -> anyhow::Result<()> {
    let group = &description.group_id;
    let committed = admin.list_group_offsets(group, None).await?;
    let owners = owners(description);
    let partitions: BTreeSet<TopicPartition> =
        committed.keys().chain(owners.keys()).cloned().collect();
    let ends = end_offsets(admin, &partitions).await?;
    if description.members.is_empty() {
        eprintln!("\nConsumer group '{group}' has no active members.");
    }
    let rows: Vec<Vec<String>> = partitions
        .iter()
        .map(|tp| {
            let current = committed.get(tp).map(|c| c.offset);
            let end = ends.get(tp).copied();
            let lag = match (current, end) {
                (Some(c), Some(e)) => (e - c).max(0).to_string(),
                _ => "-".into(),
            };
            let (consumer, host, client) = match owners.get(tp) {
                Some(&i) => {
                    let m = &description.members[i];
                    (
                        m.member_id.clone(),
                        m.client_host.clone(),
                        m.client_id.clone(),
                    )
                }
                None => ("-".into(), "-".into(), "-".into()),
            };
            vec![
                group.clone(),
                tp.topic.clone(),
                tp.partition.to_string(),
                dash(current),
                dash(end),
                lag,
                consumer,
                host,
                client,
            ]
        })
        .collect();
    println!();
    print_table(
        &[
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID",
        ],
        &rows,
    );
    Ok(())
}

fn describe_members(description: &GroupDescription) {
    let group = &description.group_id;
    if description.members.is_empty() {
        eprintln!("\nConsumer group '{group}' has no active members.");
        return;
    }
    let rows: Vec<Vec<String>> = description
        .members
        .iter()
        .map(|m| {
            vec![
                group.clone(),
                m.member_id.clone(),
                m.group_instance_id.clone().unwrap_or_else(|| "-".into()),
                m.client_host.clone(),
                m.client_id.clone(),
                m.assignment.len().to_string(),
                assignment_text(&m.assignment),
            ]
        })
        .collect();
    println!();
    print_table(
        &[
            "GROUP",
            "CONSUMER-ID",
            "GROUP-INSTANCE-ID",
            "HOST",
            "CLIENT-ID",
            "#PARTITIONS",
            "ASSIGNMENT",
        ],
        &rows,
    );
}

/// `topic(0,1),other(3)`, as kafka-consumer-groups.sh --members --verbose prints it.
fn assignment_text(partitions: &[TopicPartition]) -> String {
    if partitions.is_empty() {
        return "-".into();
    }
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    by_topic
        .into_iter()
        .map(|(t, ps)| {
            let list: Vec<String> = ps.iter().map(i32::to_string).collect();
            format!("{t}({})", list.join(","))
        })
        .collect::<Vec<_>>()
        .join(",")
}

async fn describe_state(admin: &Admin, description: &GroupDescription) -> anyhow::Result<()> {
    let coordinator = admin.find_coordinator(&description.group_id).await?;
    let row = vec![
        description.group_id.clone(),
        format!("{} ({})", coordinator.addr(), coordinator.node_id),
        if description.protocol.is_empty() {
            "-".into()
        } else {
            description.protocol.clone()
        },
        description.state.clone(),
        description.members.len().to_string(),
    ];
    println!();
    print_table(
        &[
            "GROUP",
            "COORDINATOR (ID)",
            "ASSIGNMENT-STRATEGY",
            "STATE",
            "#MEMBERS",
        ],
        &[row],
    );
    Ok(())
}

async fn end_offsets(
    admin: &Admin,
    partitions: &BTreeSet<TopicPartition>,
) -> anyhow::Result<BTreeMap<TopicPartition, i64>> {
    let asked: Vec<(TopicPartition, OffsetSpec)> = partitions
        .iter()
        .map(|tp| (tp.clone(), OffsetSpec::Latest))
        .collect();
    let mut ends = BTreeMap::new();
    for (tp, result) in admin.list_offsets(&asked).await? {
        match result {
            Ok(listed) => {
                ends.insert(tp, listed.offset);
            }
            // A deleted topic's committed offsets are still shown, without an end.
            Err(e) => tracing::debug!(%tp, error = %e, "no end offset"),
        }
    }
    Ok(ends)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Earliest,
    Latest,
    Offset(i64),
    Timestamp(i64),
}

async fn reset_offsets(
    admin: &Admin,
    group: &str,
    topics: &[String],
    target: Target,
    dry_run: bool,
) -> anyhow::Result<()> {
    // A group that does not exist yet gets its offsets, as with Kafka.
    let state = match admin.describe_group(group).await {
        Ok(description) => description.state,
        Err(e) if e.code() == Some(ResponseError::GroupIdNotFound) => "Dead".into(),
        Err(e) => return Err(e.into()),
    };
    if !matches!(state.as_str(), "Empty" | "Dead") {
        bail!(
            "Assignments can only be reset if the group '{group}' is inactive, but the current state is {state}. Stop its consumers first (or wait for their session to time out)."
        );
    }
    let partitions = resolve_partitions(admin, topics).await?;
    let new_offsets = target_offsets(admin, &partitions, target).await?;
    if !dry_run {
        let results = admin.commit_group_offsets(group, &new_offsets).await?;
        let failed: Vec<String> = results
            .iter()
            .filter_map(|(tp, r)| r.as_ref().err().map(|e| format!("{tp}: {e}")))
            .collect();
        if !failed.is_empty() {
            bail!("could not reset some offsets:\n{}", failed.join("\n"));
        }
    }
    let rows: Vec<Vec<String>> = new_offsets
        .iter()
        .map(|(tp, offset)| {
            vec![
                group.to_string(),
                tp.topic.clone(),
                tp.partition.to_string(),
                offset.to_string(),
            ]
        })
        .collect();
    println!();
    print_table(&["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"], &rows);
    if dry_run {
        eprintln!("Dry run: the group's offsets were not changed.");
    }
    Ok(())
}

/// `topic` (every partition) or `topic:0,2`, checked against the topic's partitions.
async fn resolve_partitions(
    admin: &Admin,
    specs: &[String],
) -> anyhow::Result<Vec<TopicPartition>> {
    let mut partitions = BTreeSet::new();
    for spec in specs {
        let (topic, wanted) = match spec.split_once(':') {
            Some((t, list)) => {
                let wanted: Vec<i32> = list
                    .split(',')
                    .map(|p| {
                        p.trim().parse::<i32>().with_context(|| {
                            format!("{p:?} in --topic {spec} is not a partition number")
                        })
                    })
                    .collect::<anyhow::Result<_>>()?;
                (t, Some(wanted))
            }
            None => (spec.as_str(), None),
        };
        let metadata = admin.describe_topics(&[topic.to_string()]).await?;
        let Some(t) = metadata.into_iter().find(|t| t.name == topic) else {
            return Err(KafkaError::UnknownTopic {
                topic: topic.to_string(),
            }
            .into());
        };
        match wanted {
            None => partitions.extend(
                t.partitions
                    .iter()
                    .map(|p| TopicPartition::new(topic, p.partition)),
            ),
            Some(list) => {
                for p in list {
                    if t.partition(p).is_none() {
                        bail!(
                            "topic {topic} has {} partitions, so there is no partition {p}",
                            t.partitions.len()
                        );
                    }
                    partitions.insert(TopicPartition::new(topic, p));
                }
            }
        }
    }
    Ok(partitions.into_iter().collect())
}

async fn target_offsets(
    admin: &Admin,
    partitions: &[TopicPartition],
    target: Target,
) -> anyhow::Result<BTreeMap<TopicPartition, i64>> {
    let earliest = listed(admin, partitions, OffsetSpec::Earliest).await?;
    let latest = listed(admin, partitions, OffsetSpec::Latest).await?;
    let at_time = match target {
        Target::Timestamp(ms) => Some(listed(admin, partitions, OffsetSpec::Timestamp(ms)).await?),
        _ => None,
    };
    let mut offsets = BTreeMap::new();
    for tp in partitions {
        let (low, high) = (earliest[tp], latest[tp]);
        let offset = match target {
            Target::Earliest => low,
            Target::Latest => high,
            // As Kafka does: an offset outside the log is moved to its nearest end.
            Target::Offset(n) => n.clamp(low, high.max(low)),
            // No record that late: the end, as Kafka does.
            Target::Timestamp(_) => match at_time.as_ref().and_then(|m| m.get(tp)) {
                Some(&o) if o >= 0 => o,
                _ => high,
            },
        };
        offsets.insert(tp.clone(), offset);
    }
    Ok(offsets)
}

async fn listed(
    admin: &Admin,
    partitions: &[TopicPartition],
    spec: OffsetSpec,
) -> anyhow::Result<BTreeMap<TopicPartition, i64>> {
    let asked: Vec<(TopicPartition, OffsetSpec)> =
        partitions.iter().map(|tp| (tp.clone(), spec)).collect();
    let mut found = BTreeMap::new();
    for (tp, result) in admin.list_offsets(&asked).await? {
        let listed = result.with_context(|| format!("cannot find the offsets of {tp}"))?;
        found.insert(tp, listed.offset);
    }
    for tp in partitions {
        if !found.contains_key(tp) {
            bail!("the broker did not report the offsets of {tp}");
        }
    }
    Ok(found)
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]` (UTC when no
/// zone is given), the format kafka-consumer-groups.sh takes.
fn parse_datetime(s: &str) -> anyhow::Result<i64> {
    let bad = |reason: String| {
        anyhow::anyhow!("{s:?} is not a date and time like 2026-11-25T10:00:00Z or 2026-11-25T10:00:00.000+01:00 ({reason})")
    };
    if !s.contains('T') {
        return Err(bad("a time of day is needed".into()));
    }
    let instant = match s.parse::<jiff::Timestamp>() {
        Ok(instant) => instant,
        // No offset: a civil time, read as UTC.
        Err(_) => s
            .parse::<jiff::civil::DateTime>()
            .and_then(|civil| civil.to_zoned(jiff::tz::TimeZone::UTC))
            .map_err(|e| bad(e.to_string()))?
            .timestamp(),
    };
    Ok(instant.as_millisecond())
}

fn explain_delete(e: &KafkaError) -> String {
    match e.code() {
        Some(ResponseError::NonEmptyGroup) => {
            "the group has active members; stop its consumers first".into()
        }
        Some(ResponseError::GroupIdNotFound) => "the group does not exist".into(),
        _ => e.to_string(),
    }
}

fn quoted(groups: &[String]) -> String {
    groups
        .iter()
        .map(|g| format!("'{g}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn dash(v: Option<i64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// Columns left-aligned and padded to their widest cell, one space apart, as
/// kafka-consumer-groups.sh prints them.
fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$} "));
            }
        }
        println!("{out}");
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_to_epoch_millis() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z").ok(), Some(0));
        assert_eq!(
            parse_datetime("2026-11-25T10:00:00Z").ok(),
            Some(1_795_600_800_000)
        );
        assert_eq!(
            parse_datetime("2026-11-25T11:00:00.250+01:00").ok(),
            Some(1_795_600_800_250)
        );
        assert_eq!(
            parse_datetime("2026-11-25T05:30:00-04:30").ok(),
            Some(1_795_600_800_000)
        );
        assert_eq!(
            parse_datetime("2000-02-29T00:00:00").ok(),
            Some(951_782_400_000)
        );
        for bad in [
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-25",
            "2026-11-25T25:00:00Z",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn assignments_print_as_topic_and_partition_lists() {
        let tps = vec![
            TopicPartition::new("b", 1),
            TopicPartition::new("a", 0),
            TopicPartition::new("a", 2),
        ];
        assert_eq!(assignment_text(&tps), "a(0,2),b(1)");
        assert_eq!(assignment_text(&[]), "-");
    }

    #[test]
    fn states_are_kafkas_names_in_any_case() {
        assert_eq!(canonical_state("stable").ok().as_deref(), Some("Stable"));
        assert!(canonical_state("running").is_err());
    }
}
