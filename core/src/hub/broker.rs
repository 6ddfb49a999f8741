//! What outlives one hub process: each project's log (its epoch, top offset and last messages,
//! for recovery) and its state, behind a small trait, so a broker shared by several hub nodes can
//! replace the in-memory one.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use crate::rng::Rng;
use crate::wire::Envelope;

/// One encoded frame, shared by every connection it goes to (encoded once).
pub type Frame = Arc<str>;

/// Why a position cannot be recovered from a project's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unrecoverable {
    /// The log is another one than the position's (created anew, or lost and created again).
    EpochChanged,
    /// The log no longer holds the messages right after the position.
    TooOld,
    /// More messages were missed than one replay carries.
    TooMany,
    /// The position is beyond the log's top (the log lost its tail).
    Ahead,
}

impl Unrecoverable {
    /// The wire name (`project_joined.reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            Unrecoverable::EpochChanged => "epoch_changed",
            Unrecoverable::TooOld => "too_old",
            Unrecoverable::TooMany => "too_many",
            Unrecoverable::Ahead => "ahead",
        }
    }
}

/// A project log's epoch and top offset (0 for a log with nothing in it yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogPosition {
    /// The log's epoch.
    pub epoch: String,
    /// The offset of its last message.
    pub offset: u64,
}

/// Where the hub keeps project logs and project state.
pub trait Broker: Send {
    /// Appends a project message: the log (created with a new epoch if it has none) gives it the
    /// next offset and keeps its frame for replay. Returns the position and that frame, with the
    /// position in it, the same bytes for every member.
    fn append(&mut self, project: u64, message: Envelope) -> (LogPosition, Frame);
    /// The log's epoch and top offset (creating an empty log if it has none).
    fn top(&mut self, project: u64) -> LogPosition;
    /// The frames after `offset` in the log of `epoch`, in order, at most `limit`; or why not.
    fn replay(
        &mut self,
        project: u64,
        epoch: &str,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<Frame>, Unrecoverable>;
    /// Stores a project's new state and returns its new version.
    fn bump_version(&mut self, project: u64, state: Value) -> u64;
    /// A project's version and state.
    fn project_state(&self, project: u64) -> (u64, Value);
}

#[derive(Debug)]
struct ProjectLog {
    epoch: String,
    top: u64,
    /// The last messages, oldest first, each with its offset.
    frames: VecDeque<(u64, Frame)>,
}

/// The single-process broker: every log in memory, at most `capacity` messages each.
#[derive(Debug)]
pub struct InMemoryBroker {
    capacity: usize,
    /// Draws epochs: a broker that starts afresh must never reuse one.
    rng: Rng,
    logs: BTreeMap<u64, ProjectLog>,
    states: BTreeMap<u64, (u64, Value)>,
}

impl InMemoryBroker {
    /// An empty broker keeping the last `capacity` messages of each project; `seed` draws its
    /// epochs (give every broker instance its own, or a restarted one reuses the epochs).
    pub fn new(capacity: usize, seed: u64) -> Self {
        InMemoryBroker {
            capacity: capacity.max(1),
            rng: Rng::new(seed),
            logs: BTreeMap::new(),
            states: BTreeMap::new(),
        }
    }

    fn log(&mut self, project: u64) -> &mut ProjectLog {
        let rng = &mut self.rng;
        self.logs.entry(project).or_insert_with(|| ProjectLog {
            epoch: format!("{:016x}", rng.next_u64()),
            top: 0,
            frames: VecDeque::new(),
        })
    }
}

impl Broker for InMemoryBroker {
    fn append(&mut self, project: u64, mut message: Envelope) -> (LogPosition, Frame) {
        let capacity = self.capacity;
        let log = self.log(project);
        log.top += 1;
        message.project_id = Some(project);
        message.epoch = Some(log.epoch.clone());
        message.offset = Some(log.top);
        let frame: Frame = message.to_json().into();
        if log.frames.len() >= capacity {
            log.frames.pop_front();
        }
        log.frames.push_back((log.top, frame.clone()));
        let position = LogPosition {
            epoch: log.epoch.clone(),
            offset: log.top,
        };
        (position, frame)
    }

    fn top(&mut self, project: u64) -> LogPosition {
        let log = self.log(project);
        LogPosition {
            epoch: log.epoch.clone(),
            offset: log.top,
        }
    }

    fn replay(
        &mut self,
        project: u64,
        epoch: &str,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<Frame>, Unrecoverable> {
        let log = self.log(project);
        if log.epoch != epoch {
            return Err(Unrecoverable::EpochChanged);
        }
        if offset > log.top {
            return Err(Unrecoverable::Ahead);
        }
        let missed = log.top - offset;
        if missed == 0 {
            return Ok(Vec::new());
        }
        // The top lives apart from the kept messages: a quiet project whose messages all aged
        // out still recovers a client that saw the last one (nothing was missed).
        let oldest = log.frames.front().map_or(log.top + 1, |(o, _)| *o);
        if oldest > offset + 1 {
            return Err(Unrecoverable::TooOld);
        }
        if missed > limit as u64 {
            return Err(Unrecoverable::TooMany);
        }
        Ok(log
            .frames
            .iter()
            .filter(|(o, _)| *o > offset)
            .map(|(_, f)| f.clone())
            .collect())
    }

    fn bump_version(&mut self, project: u64, state: Value) -> u64 {
        let entry = self.states.entry(project).or_insert((0, Value::Null));
        entry.0 += 1;
        entry.1 = state;
        entry.0
    }

    fn project_state(&self, project: u64) -> (u64, Value) {
        self.states
            .get(&project)
            .cloned()
            .unwrap_or((0, Value::Object(Default::default())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_count_from_one_in_one_epoch_and_frames_carry_them() {
        let mut b = InMemoryBroker::new(8, 1);
        let empty = b.top(7);
        assert_eq!(empty.offset, 0);
        let (p1, f1) = b.append(7, Envelope::new("n", &1));
        let (p2, _) = b.append(7, Envelope::new("n", &2));
        assert_eq!((p1.offset, p2.offset), (1, 2));
        assert_eq!(p1.epoch, empty.epoch);
        assert_eq!(
            &*f1,
            format!(
                r#"{{"type":"n","data":1,"projectId":7,"epoch":"{}","offset":1}}"#,
                p1.epoch
            )
        );
        assert_ne!(b.top(8).epoch, p1.epoch, "each log has its own epoch");
        let again = InMemoryBroker::new(8, 2).top(7).epoch;
        assert_ne!(again, p1.epoch, "a broker started afresh draws new epochs");
    }

    #[test]
    fn replay_recovers_what_the_log_still_holds_and_says_why_not() {
        let mut b = InMemoryBroker::new(3, 1);
        let epoch = b.top(1).epoch;
        assert_eq!(b.replay(1, &epoch, 0, 10), Ok(vec![]), "nothing missed");
        for i in 0..5 {
            b.append(1, Envelope::new("n", &i));
        }
        let got = b.replay(1, &epoch, 2, 10).unwrap();
        assert_eq!(got.len(), 3);
        assert!(got[0].contains(r#""offset":3"#), "{}", got[0]);
        assert_eq!(b.replay(1, &epoch, 5, 10), Ok(vec![]));
        assert_eq!(b.replay(1, &epoch, 1, 10), Err(Unrecoverable::TooOld));
        assert_eq!(b.replay(1, &epoch, 6, 10), Err(Unrecoverable::Ahead));
        assert_eq!(
            b.replay(1, "other", 5, 10),
            Err(Unrecoverable::EpochChanged)
        );
        assert_eq!(b.replay(1, &epoch, 2, 2), Err(Unrecoverable::TooMany));
    }

    #[test]
    fn versions_count_per_project() {
        let mut b = InMemoryBroker::new(1, 1);
        assert_eq!(b.bump_version(1, serde_json::json!({"x": 1})), 1);
        assert_eq!(b.bump_version(1, serde_json::json!({"x": 2})), 2);
        assert_eq!(b.project_state(1), (2, serde_json::json!({"x": 2})));
        assert_eq!(b.project_state(2).0, 0);
    }
}
