//! The simulator plugin: one [`MemDisk`] per simulated node, crashed when madsim kills it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use madsim::plugin::{self, Simulator};
use madsim::rand::{GlobalRng, Rng};
use madsim::task::NodeId;
use madsim::time::TimeHandle;
use madsim::Config;

use super::{DiskFaults, MemDisk};

/// Registered with `Runtime::add_simulator::<SimDisks>()`.
pub struct SimDisks {
    rng: GlobalRng,
    disks: Mutex<BTreeMap<NodeId, MemDisk>>,
}

impl Simulator for SimDisks {
    fn new(rng: &GlobalRng, _time: &TimeHandle, _config: &Config) -> Self {
        SimDisks {
            rng: rng.clone(),
            disks: Mutex::new(BTreeMap::new()),
        }
    }

    /// madsim calls this when it kills a node: the node's disk loses what was not durable.
    fn reset_node(&self, id: NodeId) {
        let disk = self.lock().get(&id).cloned();
        if let Some(disk) = disk {
            let mut rng = self.rng.clone();
            disk.crash(&mut rng);
        }
    }
}

impl SimDisks {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, MemDisk>> {
        self.disks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn disk(&self, id: NodeId) -> MemDisk {
        let mut disks = self.lock();
        let rng = &mut self.rng.clone();
        disks
            .entry(id)
            .or_insert_with(|| MemDisk::new(rng.gen()))
            .clone()
    }

    /// The disk of the node the calling task runs on; it outlives the node's restarts.
    pub fn current() -> MemDisk {
        plugin::simulator::<SimDisks>().disk(plugin::node())
    }

    /// The disk of any node, for the nemesis and the checker.
    pub fn of(node: NodeId) -> MemDisk {
        plugin::simulator::<SimDisks>().disk(node)
    }

    pub fn set_faults(node: NodeId, faults: DiskFaults) {
        Self::of(node).set_faults(faults);
    }
}
