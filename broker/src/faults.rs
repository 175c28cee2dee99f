//! Fault injection, for users testing their applications against a failing broker and for
//! the simulator's nemesis: partition actors panic in the middle of an append, and
//! coordinator shards before a job, with a given probability, so the supervisors'
//! restarts and the recovery behind them are exercised.
//!
//! Two sources, the larger wins: `runnel.fault.actor.crash.probability` in the broker's
//! config, and a process-wide switch the simulator turns on and off while it runs (madsim
//! runs every simulated node in one process; the workloads run one broker). Under madsim
//! the draws come from its seeded RNG, so a crashing run replays exactly.

use std::sync::atomic::{AtomicU64, Ordering};

/// The switch's probability, as `f64` bits; 0 is off.
static ACTOR_CRASH_PROBABILITY_BITS: AtomicU64 = AtomicU64::new(0);

/// Turns the process-wide actor-crash fault on (`probability` per handled change) or off
/// (0).
pub fn set_actor_crash_probability(probability: f64) {
    assert!(
        (0.0..=1.0).contains(&probability),
        "a probability is between 0 and 1, not {probability}"
    );
    ACTOR_CRASH_PROBABILITY_BITS.store(probability.to_bits(), Ordering::Relaxed);
}

/// Whether the actor handling a change should panic now.
pub(crate) fn should_crash(configured: f64) -> bool {
    let switched = f64::from_bits(ACTOR_CRASH_PROBABILITY_BITS.load(Ordering::Relaxed));
    let probability = configured.max(switched);
    probability > 0.0 && draw() < probability
}

#[cfg(madsim)]
fn draw() -> f64 {
    madsim::rand::random::<f64>()
}

#[cfg(not(madsim))]
fn draw() -> f64 {
    rand::random::<f64>()
}
