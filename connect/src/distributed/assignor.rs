//! The leader's assignor for the incremental cooperative protocols (KIP-415), a pure state
//! machine with the semantics of Kafka's `IncrementalCooperativeAssignor`:
//!
//! - a member keeps what it runs unless it is revoked: connectors and tasks that were
//!   deleted, that two members run at once, or (load balancing) what an overloaded member
//!   must give up, in a round of its own so the new owner starts only after the old one
//!   stopped;
//! - what a departed member ran is *lost*: the first time, the leader schedules a
//!   rebalance `scheduled.rebalance.max.delay.ms` later and gives it to no one, so a
//!   worker that bounces comes back to its own work; at the deadline it goes to the
//!   members that joined empty-handed meanwhile, or else to everyone, least loaded first;
//! - load-balancing revocations in consecutive rounds back off exponentially (1 ms × 40ⁿ,
//!   at most the max delay), as Kafka's do.
//!
//! Ties are broken by worker name and items are taken in name order; Kafka's lists keep
//! its hash and insertion orders instead, so which item moves may differ, never how many.

use std::collections::{BTreeMap, BTreeSet};

use super::protocol::ConnectorsAndTasks;
use crate::entities::TaskId;

/// What one rebalance gives every member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterAssignment {
    /// Newly assigned, per member (what it must start).
    pub assigned: BTreeMap<String, ConnectorsAndTasks>,
    /// Revoked, per member (what it must stop).
    pub revoked: BTreeMap<String, ConnectorsAndTasks>,
    /// What each member runs once it has done both.
    pub all: BTreeMap<String, ConnectorsAndTasks>,
    /// When the leader wants the next rebalance, in milliseconds from now (0: none).
    pub delay_ms: i32,
}

#[derive(Debug, Clone)]
struct WorkerLoad {
    worker: String,
    connectors: Vec<String>,
    tasks: Vec<TaskId>,
}

impl WorkerLoad {
    fn of(worker: &str, set: &ConnectorsAndTasks) -> WorkerLoad {
        WorkerLoad {
            worker: worker.to_string(),
            connectors: set.connectors.iter().cloned().collect(),
            tasks: set.tasks.iter().cloned().collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.connectors.is_empty() && self.tasks.is_empty()
    }

    fn set(&self) -> ConnectorsAndTasks {
        ConnectorsAndTasks {
            connectors: self.connectors.iter().cloned().collect(),
            tasks: self.tasks.iter().cloned().collect(),
        }
    }

    fn remove(&mut self, set: &ConnectorsAndTasks) {
        self.connectors.retain(|c| !set.connectors.contains(c));
        self.tasks.retain(|t| !set.tasks.contains(t));
    }
}

/// The leader's memory between rebalances (Kafka keeps it in the assignor too; a new
/// leader starts from what the members report).
#[derive(Debug, Clone)]
pub struct Assignor {
    max_delay_ms: i32,
    previous_assignment: ConnectorsAndTasks,
    previous_revocation: ConnectorsAndTasks,
    previous_generation: i32,
    previous_members: BTreeSet<String>,
    /// When lost work is to be reassigned, in milliseconds on the caller's clock (0: none).
    scheduled_rebalance_ms: i64,
    delay_ms: i32,
    revoked_in_previous: bool,
    candidate_workers: BTreeSet<String>,
    successive_revoking_rounds: u32,
}

impl Assignor {
    pub fn new(max_delay_ms: i32) -> Assignor {
        assert!(max_delay_ms >= 0);
        Assignor {
            max_delay_ms,
            previous_assignment: ConnectorsAndTasks::default(),
            previous_revocation: ConnectorsAndTasks::default(),
            previous_generation: -1,
            previous_members: BTreeSet::new(),
            scheduled_rebalance_ms: 0,
            delay_ms: 0,
            revoked_in_previous: false,
            candidate_workers: BTreeSet::new(),
            successive_revoking_rounds: 0,
        }
    }

    /// Kafka's exponential backoff between consecutive revoking rounds: 1 ms × 40ⁿ.
    fn revoking_backoff_ms(&self, rounds: u32) -> i32 {
        if self.max_delay_ms == 0 {
            return 0;
        }
        let term = 40f64.powi(rounds.min(16) as i32);
        term.min(f64::from(self.max_delay_ms)) as i32
    }

    /// One rebalance: `configured` is what the config topic holds, `members` what each
    /// member reports running, `now_ms` the leader's clock.
    pub fn assign(
        &mut self,
        now_ms: i64,
        configured: &ConnectorsAndTasks,
        last_completed_generation: i32,
        current_generation: i32,
        members: &BTreeMap<String, ConnectorsAndTasks>,
    ) -> ClusterAssignment {
        assert!(!members.is_empty(), "the leader is a member");
        if self.previous_generation != last_completed_generation {
            // The leader missed a round: its memory is stale; trust the members.
            self.previous_assignment = ConnectorsAndTasks::default();
        }
        let mut active = ConnectorsAndTasks::default();
        for set in members.values() {
            active.extend(set);
        }
        if !self.previous_revocation.is_empty() {
            let still_running = self
                .previous_revocation
                .connectors
                .iter()
                .any(|c| active.connectors.contains(c))
                || self
                    .previous_revocation
                    .tasks
                    .iter()
                    .any(|t| active.tasks.contains(t));
            if still_running {
                // A revocation was not honoured: what runs is the truth.
                self.previous_assignment = active.clone();
            }
            self.previous_revocation = ConnectorsAndTasks::default();
        }
        let deleted = self.previous_assignment.minus(&[configured]);
        let duplicated = duplicated(members);
        let lost = self.previous_assignment.minus(&[&active, &deleted]);
        let created = configured.minus(&[&self.previous_assignment, &active]);

        let current: Vec<WorkerLoad> = members
            .iter()
            .map(|(w, s)| WorkerLoad::of(w, &s.minus(&[&deleted])))
            .collect();
        let mut to_revoke: BTreeMap<String, ConnectorsAndTasks> = BTreeMap::new();
        let mut next: Vec<WorkerLoad> = members.iter().map(|(w, s)| WorkerLoad::of(w, s)).collect();
        for bad in [&deleted, &duplicated] {
            for load in &mut next {
                let mine = intersection(bad, &members[&load.worker]);
                if !mine.is_empty() {
                    load.remove(&mine);
                    to_revoke
                        .entry(load.worker.clone())
                        .or_default()
                        .extend(&mine);
                }
            }
        }

        let lost_to_reassign = self.handle_lost(now_ms, &lost, &mut next);

        if self.delay_ms == 0 {
            let balancing = balancing_revocations(configured, &next);
            if self.revoked_in_previous && !balancing.is_empty() {
                self.successive_revoking_rounds += 1;
                self.delay_ms = self.revoking_backoff_ms(self.successive_revoking_rounds);
                if self.delay_ms != 0 {
                    self.scheduled_rebalance_ms = now_ms + i64::from(self.delay_ms);
                } else {
                    apply_revocations(&mut to_revoke, &mut next, &balancing);
                }
            } else if !balancing.is_empty() {
                apply_revocations(&mut to_revoke, &mut next, &balancing);
                self.revoked_in_previous = true;
            } else if self.revoked_in_previous {
                self.revoked_in_previous = false;
                self.successive_revoking_rounds = 0;
            }
        } else {
            self.revoked_in_previous = false;
        }

        let mut to_assign = created.clone();
        to_assign.extend(&lost_to_reassign);
        assign_connectors(&mut next, &to_assign.connectors);
        assign_tasks(&mut next, &to_assign.tasks);

        let mut out = ClusterAssignment {
            delay_ms: self.delay_ms,
            ..ClusterAssignment::default()
        };
        let mut next_all = ConnectorsAndTasks::default();
        for load in &next {
            let now = load.set();
            let before = current
                .iter()
                .find(|c| c.worker == load.worker)
                .map(WorkerLoad::set)
                .unwrap_or_default();
            out.assigned
                .insert(load.worker.clone(), now.minus(&[&before]));
            let revoked = to_revoke.get(&load.worker).cloned().unwrap_or_default();
            out.all.insert(load.worker.clone(), now.minus(&[&revoked]));
            out.revoked.insert(load.worker.clone(), revoked);
            next_all.extend(&now);
        }
        for revoked in to_revoke.values() {
            next_all.remove_all(revoked);
            self.previous_revocation.extend(revoked);
        }
        next_all.extend(&lost);
        self.previous_assignment = next_all;
        self.previous_generation = current_generation;
        self.previous_members = members.keys().cloned().collect();
        out
    }

    /// Kafka's `handleLostAssignments`: what of `lost` to reassign now; may give it
    /// straight to the members that joined empty-handed, or hold it back with a delay.
    fn handle_lost(
        &mut self,
        now_ms: i64,
        lost: &ConnectorsAndTasks,
        workers: &mut [WorkerLoad],
    ) -> ConnectorsAndTasks {
        if lost.is_empty() && !self.revoked_in_previous {
            self.reset_delay();
            return ConnectorsAndTasks::default();
        }
        let active: BTreeSet<&str> = workers.iter().map(|w| w.worker.as_str()).collect();
        let nobody_left = self
            .previous_members
            .iter()
            .all(|m| active.contains(m.as_str()));
        if (self.scheduled_rebalance_ms <= 0 && nobody_left) || self.max_delay_ms == 0 {
            // Every earlier member is here: the work went missing in a failed round.
            return lost.clone();
        }
        if self.scheduled_rebalance_ms > 0 && now_ms >= self.scheduled_rebalance_ms {
            let candidates: Vec<usize> = workers
                .iter()
                .enumerate()
                .filter(|(_, w)| self.candidate_workers.contains(&w.worker))
                .map(|(i, _)| i)
                .collect();
            let out = if candidates.is_empty() {
                lost.clone()
            } else {
                for (n, c) in lost.connectors.iter().enumerate() {
                    workers[candidates[n % candidates.len()]]
                        .connectors
                        .push(c.clone());
                }
                for (n, t) in lost.tasks.iter().enumerate() {
                    workers[candidates[n % candidates.len()]]
                        .tasks
                        .push(t.clone());
                }
                ConnectorsAndTasks::default()
            };
            self.reset_delay();
            self.revoked_in_previous = false;
            return out;
        }
        self.candidate_workers.extend(
            workers
                .iter()
                .filter(|w| w.is_empty())
                .map(|w| w.worker.clone()),
        );
        self.delay_ms = if now_ms < self.scheduled_rebalance_ms {
            (self.scheduled_rebalance_ms - now_ms).min(i64::from(self.max_delay_ms)) as i32
        } else {
            self.max_delay_ms
        };
        self.scheduled_rebalance_ms = now_ms + i64::from(self.delay_ms);
        ConnectorsAndTasks::default()
    }

    fn reset_delay(&mut self) {
        self.candidate_workers.clear();
        self.scheduled_rebalance_ms = 0;
        self.delay_ms = 0;
    }
}

fn intersection(a: &ConnectorsAndTasks, b: &ConnectorsAndTasks) -> ConnectorsAndTasks {
    ConnectorsAndTasks {
        connectors: a.connectors.intersection(&b.connectors).cloned().collect(),
        tasks: a.tasks.intersection(&b.tasks).cloned().collect(),
    }
}

fn duplicated(members: &BTreeMap<String, ConnectorsAndTasks>) -> ConnectorsAndTasks {
    let mut seen = ConnectorsAndTasks::default();
    let mut twice = ConnectorsAndTasks::default();
    for set in members.values() {
        for c in &set.connectors {
            if !seen.connectors.insert(c.clone()) {
                twice.connectors.insert(c.clone());
            }
        }
        for t in &set.tasks {
            if !seen.tasks.insert(t.clone()) {
                twice.tasks.insert(t.clone());
            }
        }
    }
    twice
}

fn apply_revocations(
    to_revoke: &mut BTreeMap<String, ConnectorsAndTasks>,
    next: &mut [WorkerLoad],
    revocations: &BTreeMap<String, ConnectorsAndTasks>,
) {
    for (worker, set) in revocations {
        to_revoke.entry(worker.clone()).or_default().extend(set);
        if let Some(load) = next.iter_mut().find(|l| &l.worker == worker) {
            load.remove(set);
        }
    }
}

/// What overloaded members give up so that, with what is new, every member ends within
/// one of the mean, for connectors and tasks separately.
fn balancing_revocations(
    configured: &ConnectorsAndTasks,
    workers: &[WorkerLoad],
) -> BTreeMap<String, ConnectorsAndTasks> {
    let mut out: BTreeMap<String, ConnectorsAndTasks> = BTreeMap::new();
    if workers.iter().all(WorkerLoad::is_empty) || configured.is_empty() {
        return out;
    }
    let connectors = revocations(configured.connectors.len(), workers, |w| &w.connectors);
    for (w, items) in connectors {
        out.entry(w).or_default().connectors.extend(items);
    }
    let tasks = revocations(configured.tasks.len(), workers, |w| &w.tasks);
    for (w, items) in tasks {
        out.entry(w).or_default().tasks.extend(items);
    }
    out
}

fn revocations<E: Clone>(
    total: usize,
    workers: &[WorkerLoad],
    of: impl Fn(&WorkerLoad) -> &Vec<E>,
) -> Vec<(String, Vec<E>)> {
    let min = total / workers.len();
    let extras = total % workers.len();
    let at_min = workers.iter().filter(|w| of(w).len() == min).count();
    let at_extra = workers.iter().filter(|w| of(w).len() == min + 1).count();
    if at_extra == extras && at_min + at_extra == workers.len() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut extras_given = 0;
    for w in workers {
        let size = of(w).len();
        if size <= min {
            continue;
        }
        let keep = if extras_given < extras {
            extras_given += 1;
            if size == min + 1 {
                continue;
            }
            min + 1
        } else {
            min
        };
        out.push((w.worker.clone(), of(w)[..size - keep].to_vec()));
    }
    out
}

/// Kafka's fill: sorted by load then name once, then rounds over the least loaded.
fn assign_connectors(workers: &mut [WorkerLoad], items: &BTreeSet<String>) {
    workers.sort_by(|a, b| (a.connectors.len(), &a.worker).cmp(&(b.connectors.len(), &b.worker)));
    level_fill(workers, items.iter().cloned(), |w| &mut w.connectors);
}

fn assign_tasks(workers: &mut [WorkerLoad], items: &BTreeSet<TaskId>) {
    workers.sort_by(|a, b| (a.tasks.len(), &a.worker).cmp(&(b.tasks.len(), &b.worker)));
    level_fill(workers, items.iter().cloned(), |w| &mut w.tasks);
}

fn level_fill<E>(
    workers: &mut [WorkerLoad],
    items: impl Iterator<Item = E>,
    of: impl Fn(&mut WorkerLoad) -> &mut Vec<E>,
) {
    let mut items = items.peekable();
    while items.peek().is_some() {
        let first_load = of(&mut workers[0]).len();
        let up_to = (0..workers.len())
            .find(|&i| of(&mut workers[i]).len() > first_load)
            .unwrap_or(workers.len());
        for w in workers[..up_to].iter_mut() {
            match items.next() {
                Some(item) => of(w).push(item),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY_MS: i32 = 300_000;

    fn configured(connectors: &[(&str, u32)]) -> ConnectorsAndTasks {
        let mut out = ConnectorsAndTasks::default();
        for (c, n) in connectors {
            out.connectors.insert(c.to_string());
            for t in 0..*n {
                out.tasks.insert(TaskId {
                    connector: c.to_string(),
                    task: t,
                });
            }
        }
        out
    }

    /// A group whose members apply each assignment as Kafka's workers do.
    struct Group {
        assignor: Assignor,
        running: BTreeMap<String, ConnectorsAndTasks>,
        generation: i32,
        config: ConnectorsAndTasks,
        last: ClusterAssignment,
    }

    impl Group {
        fn new(workers: &[&str], config: ConnectorsAndTasks) -> Group {
            Group {
                assignor: Assignor::new(DELAY_MS),
                running: workers
                    .iter()
                    .map(|w| (w.to_string(), ConnectorsAndTasks::default()))
                    .collect(),
                generation: 0,
                config,
                last: ClusterAssignment::default(),
            }
        }

        fn rebalance(&mut self, now_ms: i64) -> &ClusterAssignment {
            let last_completed = self.generation;
            self.generation += 1;
            self.last = self.assignor.assign(
                now_ms,
                &self.config,
                last_completed - 1,
                self.generation - 1,
                &self.running,
            );
            for (w, set) in self.running.iter_mut() {
                set.remove_all(&self.last.revoked[w]);
                set.extend(&self.last.assigned[w]);
                assert_eq!(
                    set, &self.last.all[w],
                    "a member's view matches the leader's"
                );
            }
            &self.last
        }

        fn counts(&self) -> Vec<(usize, usize)> {
            self.running
                .values()
                .map(|s| (s.connectors.len(), s.tasks.len()))
                .collect()
        }

        fn revoked_count(&self) -> usize {
            self.last
                .revoked
                .values()
                .map(|s| s.connectors.len() + s.tasks.len())
                .sum()
        }

        /// Every configured item runs exactly once.
        fn assert_complete(&self) {
            let mut all = ConnectorsAndTasks::default();
            let mut count = 0;
            for s in self.running.values() {
                count += s.connectors.len() + s.tasks.len();
                all.extend(s);
            }
            assert_eq!(all, self.config);
            assert_eq!(
                count,
                self.config.connectors.len() + self.config.tasks.len()
            );
        }
    }

    #[test]
    fn a_first_rebalance_spreads_connectors_and_tasks_evenly() {
        let mut g = Group::new(&["w1", "w2"], configured(&[("a", 4), ("b", 4)]));
        g.rebalance(0);
        assert_eq!(g.counts(), vec![(1, 4), (1, 4)]);
        assert_eq!(g.last.delay_ms, 0);
        g.assert_complete();
    }

    #[test]
    fn a_joining_worker_gets_work_after_a_revoking_round() {
        // Kafka's documented case: revoke first, assign the next round.
        let mut g = Group::new(&["w1", "w2"], configured(&[("a", 4), ("b", 4)]));
        g.rebalance(0);
        g.running.insert("w3".into(), ConnectorsAndTasks::default());
        g.rebalance(1_000);
        assert!(
            g.last.assigned["w3"].is_empty(),
            "nothing moves in the revoking round"
        );
        assert_eq!(g.revoked_count(), 2, "w1 and w2 each give up one task");
        assert_eq!(g.last.delay_ms, 0);
        g.rebalance(2_000);
        assert_eq!(g.revoked_count(), 0);
        let mut tasks: Vec<usize> = g.counts().iter().map(|c| c.1).collect();
        tasks.sort();
        assert_eq!(tasks, vec![2, 3, 3]);
        g.assert_complete();
        // Balanced now: a further round changes nothing.
        g.rebalance(3_000);
        assert_eq!(g.revoked_count(), 0);
        assert!(g.last.assigned.values().all(ConnectorsAndTasks::is_empty));
    }

    #[test]
    fn a_departed_workers_work_waits_for_the_delay_then_moves() {
        let mut g = Group::new(&["w1", "w2", "w3"], configured(&[("a", 6)]));
        g.rebalance(0);
        let lost = g.running.remove("w2").expect("w2 ran");
        assert!(!lost.is_empty());
        g.rebalance(10_000);
        assert_eq!(
            g.last.delay_ms, DELAY_MS,
            "the first loss schedules the full delay"
        );
        assert!(g.last.assigned.values().all(ConnectorsAndTasks::is_empty));
        // A rebalance before the deadline keeps waiting, for what is left of the delay.
        g.rebalance(110_000);
        assert_eq!(g.last.delay_ms, DELAY_MS - 100_000);
        assert!(g.last.assigned.values().all(ConnectorsAndTasks::is_empty));
        // At the deadline the lost work goes to the survivors, evenly.
        g.rebalance(10_000 + i64::from(DELAY_MS));
        assert_eq!(g.last.delay_ms, 0);
        g.assert_complete();
        let tasks: Vec<usize> = g.counts().iter().map(|c| c.1).collect();
        assert_eq!(tasks, vec![3, 3]);
    }

    #[test]
    fn a_bouncing_worker_gets_its_own_work_back() {
        let mut g = Group::new(&["w1", "w2", "w3"], configured(&[("a", 3), ("b", 3)]));
        g.rebalance(0);
        let before = g.running["w2"].clone();
        g.running.remove("w2");
        g.rebalance(1_000);
        assert_eq!(g.last.delay_ms, DELAY_MS);
        // w2 comes back empty-handed under a new member id before the deadline.
        g.running
            .insert("w2-again".into(), ConnectorsAndTasks::default());
        g.rebalance(2_000);
        assert!(g.last.assigned["w2-again"].is_empty(), "still waiting");
        g.rebalance(1_000 + i64::from(DELAY_MS));
        assert_eq!(
            g.running["w2-again"], before,
            "the lost work goes to the newcomer"
        );
        assert_eq!(g.revoked_count(), 0);
        g.assert_complete();
    }

    #[test]
    fn with_no_delay_lost_work_moves_at_once() {
        let mut g = Group::new(&["w1", "w2"], configured(&[("a", 4)]));
        g.assignor = Assignor::new(0);
        g.rebalance(0);
        g.running.remove("w1");
        g.rebalance(1);
        assert_eq!(g.last.delay_ms, 0);
        g.assert_complete();
        assert_eq!(g.counts(), vec![(1, 4)]);
    }

    #[test]
    fn deleted_and_duplicated_work_is_revoked_and_new_work_assigned() {
        let mut g = Group::new(&["w1", "w2"], configured(&[("a", 2), ("b", 2)]));
        g.rebalance(0);
        g.config = configured(&[("a", 2), ("c", 1)]);
        g.rebalance(1);
        let revoked: ConnectorsAndTasks =
            g.last
                .revoked
                .values()
                .fold(ConnectorsAndTasks::default(), |mut acc, s| {
                    acc.extend(s);
                    acc
                });
        assert_eq!(revoked, configured(&[("b", 2)]));
        g.assert_complete();
        // Two members claiming one task (a failed round): both are told to stop it.
        let t = TaskId {
            connector: "a".into(),
            task: 0,
        };
        for set in g.running.values_mut() {
            set.tasks.insert(t.clone());
        }
        g.rebalance(2);
        assert!(g.last.revoked.values().all(|s| s.tasks.contains(&t)));
        g.rebalance(3);
        g.assert_complete();
    }

    #[test]
    fn consecutive_revoking_rounds_back_off() {
        let mut a = Assignor::new(DELAY_MS);
        assert_eq!(a.revoking_backoff_ms(1), 40);
        assert_eq!(a.revoking_backoff_ms(2), 1_600);
        assert_eq!(a.revoking_backoff_ms(3), 64_000);
        assert_eq!(a.revoking_backoff_ms(4), DELAY_MS);
        // A member that ignores its revocations keeps the group unbalanced: the leader
        // waits before revoking again.
        let config = configured(&[("a", 4)]);
        let mut members: BTreeMap<String, ConnectorsAndTasks> = BTreeMap::new();
        members.insert("w1".into(), config.clone());
        let first = a.assign(0, &config, -1, 0, &members);
        assert_eq!(first.delay_ms, 0);
        members.insert("w2".into(), ConnectorsAndTasks::default());
        let revoking = a.assign(1, &config, 0, 1, &members);
        assert!(!revoking.revoked["w1"].is_empty());
        let again = a.assign(2, &config, 1, 2, &members);
        assert_eq!(again.delay_ms, 40);
        assert!(again.revoked.values().all(ConnectorsAndTasks::is_empty));
    }
}
