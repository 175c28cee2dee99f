//! Incremental fetch sessions (KIP-227).
//!
//! A consumer fetching many partitions sends the full list once; the broker keeps it in a
//! session, and later requests name only the partitions whose fetch offset changed. The
//! broker answers with only the partitions that have something new. Sessions are bounded
//! (`max.incremental.fetch.session.cache.slots`); the least recently used is evicted, and
//! its client falls back to a full fetch when told FETCH_SESSION_ID_NOT_FOUND.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::ResponseError;

/// Kafka's default `max.incremental.fetch.session.cache.slots`.
pub const MAX_FETCH_SESSIONS: usize = 1000;

/// A partition a session fetches, keyed by topic name and index.
pub type SessionKey = (String, i32);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPartition {
    pub fetch_offset: i64,
    pub max_bytes: i32,
    /// What the client was last told, to decide whether the partition has news.
    pub sent_high_watermark: i64,
    pub sent_log_start_offset: i64,
}

#[derive(Debug, Clone)]
pub struct FetchSession {
    pub epoch: i32,
    pub partitions: BTreeMap<SessionKey, SessionPartition>,
    last_used: u64,
}

/// What a request asks of the session cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRequest {
    /// No session: fetch the listed partitions (session id 0, epoch -1, or any pre-v7).
    Sessionless,
    /// Start a new session with the listed partitions (session 0, epoch 0).
    Open,
    /// Close session `id` and fetch the listed partitions without one (epoch -1).
    Close { id: i32 },
    /// Continue session `id` at `epoch`.
    Continue { id: i32, epoch: i32 },
}

impl SessionRequest {
    pub fn classify(version: i16, session_id: i32, epoch: i32) -> Result<Self, ResponseError> {
        if version < 7 {
            return Ok(SessionRequest::Sessionless);
        }
        match (session_id, epoch) {
            (0, -1) => Ok(SessionRequest::Sessionless),
            (0, 0) => Ok(SessionRequest::Open),
            (0, _) => Err(ResponseError::InvalidFetchSessionEpoch),
            (id, -1) => Ok(SessionRequest::Close { id }),
            (id, epoch) if epoch > 0 => Ok(SessionRequest::Continue { id, epoch }),
            _ => Err(ResponseError::InvalidFetchSessionEpoch),
        }
    }
}

#[derive(Debug, Default)]
pub struct FetchSessionCache {
    sessions: HashMap<i32, FetchSession>,
    next_id: i32,
    clock: u64,
}

impl FetchSessionCache {
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Creates a session; returns its id, or 0 when none could be kept.
    pub fn open(&mut self, partitions: BTreeMap<SessionKey, SessionPartition>) -> i32 {
        if self.sessions.len() >= MAX_FETCH_SESSIONS {
            let oldest = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| *id)
                .expect("the cache is full, so not empty");
            self.sessions.remove(&oldest);
        }
        let id = loop {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.sessions.contains_key(&self.next_id) {
                break self.next_id;
            }
        };
        self.clock += 1;
        self.sessions.insert(
            id,
            FetchSession {
                epoch: 1,
                partitions,
                last_used: self.clock,
            },
        );
        assert!(self.sessions.len() <= MAX_FETCH_SESSIONS);
        id
    }

    pub fn close(&mut self, id: i32) {
        self.sessions.remove(&id);
    }

    /// The session `id` if `epoch` is the one it expects next.
    pub fn get(&mut self, id: i32, epoch: i32) -> Result<&mut FetchSession, ResponseError> {
        self.clock += 1;
        let session = self
            .sessions
            .get_mut(&id)
            .ok_or(ResponseError::FetchSessionIdNotFound)?;
        if session.epoch != epoch {
            return Err(ResponseError::InvalidFetchSessionEpoch);
        }
        session.last_used = self.clock;
        Ok(session)
    }
}

impl FetchSession {
    /// Moves to the next epoch, as the client will send it with its next request.
    pub fn advance(&mut self) {
        self.epoch = if self.epoch == i32::MAX {
            1
        } else {
            self.epoch + 1
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(offset: i64) -> SessionPartition {
        SessionPartition {
            fetch_offset: offset,
            max_bytes: 1024,
            sent_high_watermark: -1,
            sent_log_start_offset: -1,
        }
    }

    #[test]
    fn classify_follows_kip_227() {
        use SessionRequest::*;
        assert_eq!(SessionRequest::classify(6, 5, 5), Ok(Sessionless));
        assert_eq!(SessionRequest::classify(7, 0, -1), Ok(Sessionless));
        assert_eq!(SessionRequest::classify(7, 0, 0), Ok(Open));
        assert_eq!(SessionRequest::classify(7, 3, -1), Ok(Close { id: 3 }));
        assert_eq!(
            SessionRequest::classify(7, 3, 2),
            Ok(Continue { id: 3, epoch: 2 })
        );
        assert_eq!(
            SessionRequest::classify(7, 0, 4),
            Err(ResponseError::InvalidFetchSessionEpoch)
        );
        assert_eq!(
            SessionRequest::classify(7, 3, 0),
            Err(ResponseError::InvalidFetchSessionEpoch)
        );
    }

    #[test]
    fn sessions_check_epochs_and_evict_the_least_recently_used() {
        let mut cache = FetchSessionCache::default();
        let first = cache.open(BTreeMap::from([(("t".into(), 0), partition(0))]));
        assert!(first > 0);
        assert_eq!(
            cache.get(first, 2).err(),
            Some(ResponseError::InvalidFetchSessionEpoch)
        );
        cache.get(first, 1).expect("epoch 1 follows open").advance();
        assert!(cache.get(first, 2).is_ok());
        for _ in 1..MAX_FETCH_SESSIONS {
            cache.open(BTreeMap::new());
        }
        assert_eq!(cache.len(), MAX_FETCH_SESSIONS);
        // `first` was used most recently of the early ones; the second-opened goes first.
        cache.get(first, 2).expect("still there");
        cache.open(BTreeMap::new());
        assert_eq!(cache.len(), MAX_FETCH_SESSIONS);
        assert!(
            cache.get(first, 2).is_ok(),
            "the recently used session survives"
        );
        assert_eq!(
            cache.get(99_999, 1).err(),
            Some(ResponseError::FetchSessionIdNotFound)
        );
    }
}
