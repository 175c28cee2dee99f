//! The leader-epoch cache (KIP-101): for each leader epoch, the first offset written in it.
//! Followers truncate to the end offset of the largest epoch they share with the leader.

/// `(epoch, start_offset)` pairs, both strictly increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    pub fn from_entries(mut entries: Vec<(i32, i64)>) -> Self {
        entries.sort_unstable();
        let mut cache = LeaderEpochCache::default();
        for (epoch, offset) in entries {
            cache.assign(epoch, offset);
        }
        cache
    }

    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// Records that `epoch` starts at `start_offset`. Returns true if the cache changed.
    /// Stale or out-of-order assignments are ignored, as Kafka does.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 {
            return false;
        }
        match self.entries.last() {
            Some(&(last_epoch, last_offset))
                if epoch <= last_epoch || start_offset < last_offset =>
            {
                false
            }
            _ => {
                self.entries.push((epoch, start_offset));
                true
            }
        }
    }

    /// Drops epochs that start at or after `end_offset` (the log was truncated there).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|&(_, start)| start < end_offset);
        before != self.entries.len()
    }

    /// Moves the start of the oldest remaining epoch up to `start_offset`.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let keep_from = self.entries.iter().rposition(|&(_, s)| s <= start_offset);
        match keep_from {
            Some(i) => {
                let changed = i > 0 || self.entries[i].1 != start_offset;
                self.entries.drain(..i);
                self.entries[0].1 = start_offset;
                changed
            }
            None => false,
        }
    }

    /// The largest epoch ≤ `epoch` and the offset where the next epoch starts (or
    /// `log_end_offset`): what OffsetForLeaderEpoch answers. `None` if `epoch` predates
    /// every entry.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let i = self.entries.iter().rposition(|&(e, _)| e <= epoch)?;
        let end = self
            .entries
            .get(i + 1)
            .map_or(log_end_offset, |next| next.1);
        Some((self.entries[i].0, end))
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assign_lookup_and_truncate_like_kafka() {
        let mut cache = LeaderEpochCache::default();
        assert!(cache.assign(1, 0));
        assert!(!cache.assign(1, 5), "same epoch again");
        assert!(!cache.assign(0, 7), "older epoch");
        assert!(cache.assign(3, 10));
        assert!(cache.assign(4, 20));
        assert_eq!(cache.end_offset_for(3, 30), Some((3, 20)));
        assert_eq!(
            cache.end_offset_for(2, 30),
            Some((1, 10)),
            "largest epoch below"
        );
        assert_eq!(cache.end_offset_for(4, 30), Some((4, 30)));
        assert_eq!(
            LeaderEpochCache::from_entries(vec![(2, 5)]).end_offset_for(1, 9),
            None
        );
        assert!(cache.truncate_from_end(20));
        assert_eq!(cache.entries(), &[(1, 0), (3, 10)]);
        assert!(cache.truncate_from_start(12));
        assert_eq!(cache.entries(), &[(3, 12)]);
    }
}
