//! What outlives one connection (sessions' replay logs, project membership, project state)
//! behind a small trait, so a broker shared by several hub processes can replace the in-memory one.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::Value;

use crate::wire::Envelope;

/// Where the hub keeps sessions' replay logs, project membership, versions and state.
pub trait Broker: Send {
    /// Creates an empty session log holding at most `capacity` messages.
    fn create_session(&mut self, session: &str, capacity: usize);
    /// Forgets a session and its memberships.
    fn drop_session(&mut self, session: &str);
    /// Whether the session exists.
    fn has_session(&self, session: &str) -> bool;
    /// Numbers `message` in the session (sets `seq`), keeps it for replay, returns the frame text.
    fn append(&mut self, session: &str, message: Envelope) -> Option<String>;
    /// Every kept frame after `after`, in order; `None` if some were already evicted.
    fn replay_after(&self, session: &str, after: u64) -> Option<Vec<String>>;
    /// The last `seq` assigned in the session.
    fn last_seq(&self, session: &str) -> u64;
    /// Adds a session to a project; true if new.
    fn join(&mut self, project: u64, session: &str) -> bool;
    /// Removes a session from a project; true if it was a member.
    fn leave(&mut self, project: u64, session: &str) -> bool;
    /// The sessions in a project, sorted.
    fn members(&self, project: u64) -> Vec<String>;
    /// The projects a session is in.
    fn projects_of(&self, session: &str) -> Vec<u64>;
    /// Stores a project's new state and returns its new version.
    fn bump_version(&mut self, project: u64, state: Value) -> u64;
    /// A project's version and state.
    fn project_state(&self, project: u64) -> (u64, Value);
}

#[derive(Debug, Default)]
struct SessionLog {
    capacity: usize,
    next_seq: u64,
    frames: VecDeque<(u64, String)>,
}

/// The single-process broker.
#[derive(Debug, Default)]
pub struct InMemoryBroker {
    sessions: BTreeMap<String, SessionLog>,
    projects: BTreeMap<u64, BTreeSet<String>>,
    states: BTreeMap<u64, (u64, Value)>,
}

impl Broker for InMemoryBroker {
    fn create_session(&mut self, session: &str, capacity: usize) {
        self.sessions.insert(
            session.to_string(),
            SessionLog {
                capacity: capacity.max(1),
                next_seq: 1,
                frames: VecDeque::new(),
            },
        );
    }

    fn drop_session(&mut self, session: &str) {
        self.sessions.remove(session);
        for members in self.projects.values_mut() {
            members.remove(session);
        }
        self.projects.retain(|_, m| !m.is_empty());
    }

    fn has_session(&self, session: &str) -> bool {
        self.sessions.contains_key(session)
    }

    fn append(&mut self, session: &str, mut message: Envelope) -> Option<String> {
        let log = self.sessions.get_mut(session)?;
        let seq = log.next_seq;
        log.next_seq += 1;
        message.seq = Some(seq);
        let text = message.to_json();
        if log.frames.len() >= log.capacity {
            log.frames.pop_front();
        }
        log.frames.push_back((seq, text.clone()));
        Some(text)
    }

    fn replay_after(&self, session: &str, after: u64) -> Option<Vec<String>> {
        let log = self.sessions.get(session)?;
        let oldest_kept = log.frames.front().map_or(log.next_seq, |(s, _)| *s);
        if after.saturating_add(1) < oldest_kept || after >= log.next_seq {
            return None;
        }
        Some(
            log.frames
                .iter()
                .filter(|(s, _)| *s > after)
                .map(|(_, t)| t.clone())
                .collect(),
        )
    }

    fn last_seq(&self, session: &str) -> u64 {
        self.sessions
            .get(session)
            .map_or(0, |l| l.next_seq.saturating_sub(1))
    }

    fn join(&mut self, project: u64, session: &str) -> bool {
        self.projects
            .entry(project)
            .or_default()
            .insert(session.to_string())
    }

    fn leave(&mut self, project: u64, session: &str) -> bool {
        let Some(members) = self.projects.get_mut(&project) else {
            return false;
        };
        let was = members.remove(session);
        if members.is_empty() {
            self.projects.remove(&project);
        }
        was
    }

    fn members(&self, project: u64) -> Vec<String> {
        self.projects
            .get(&project)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn projects_of(&self, session: &str) -> Vec<u64> {
        self.projects
            .iter()
            .filter(|(_, m)| m.contains(session))
            .map(|(p, _)| *p)
            .collect()
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
    fn replay_knows_what_it_still_holds() {
        let mut b = InMemoryBroker::default();
        b.create_session("s", 2);
        for i in 0..3 {
            b.append("s", Envelope::new("n", &i));
        }
        assert_eq!(b.last_seq("s"), 3);
        let kept = b.replay_after("s", 1).unwrap();
        assert_eq!(
            kept,
            [
                r#"{"type":"n","data":1,"seq":2}"#,
                r#"{"type":"n","data":2,"seq":3}"#
            ]
        );
        assert_eq!(b.replay_after("s", 3).map(|v| v.len()), Some(0));
        assert!(b.replay_after("s", 0).is_none(), "seq 1 was evicted");
        assert!(
            b.replay_after("s", 9).is_none(),
            "claims to have seen the future"
        );
        assert!(b.replay_after("s", u64::MAX).is_none());
    }

    #[test]
    fn membership_and_versions() {
        let mut b = InMemoryBroker::default();
        assert!(b.join(1, "a"));
        assert!(!b.join(1, "a"));
        b.join(1, "b");
        assert_eq!(b.members(1), vec!["a", "b"]);
        assert_eq!(b.projects_of("a"), vec![1]);
        assert_eq!(b.bump_version(1, serde_json::json!({"x": 1})), 1);
        assert_eq!(b.bump_version(1, serde_json::json!({"x": 2})), 2);
        assert_eq!(b.project_state(1), (2, serde_json::json!({"x": 2})));
        b.drop_session("a");
        assert_eq!(b.members(1), vec!["b"]);
        assert!(b.leave(1, "b"));
        assert!(b.projects.is_empty(), "an empty project holds no memory");
    }
}
