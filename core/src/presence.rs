//! Presence: who is in each joined project, from `presence_state` snapshots and `presence_diff`s.

use std::collections::{BTreeMap, BTreeSet};

use crate::event::Event;
use crate::feature::{Effect, Effects, Feature, Verdict};
use crate::timer::Timestamp;
use crate::wire::{self, Envelope};

/// A project's member list after it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PresenceChange {
    /// The project whose members changed.
    pub(crate) project_id: u64,
    /// Sorted, deduplicated.
    pub(crate) members: Vec<String>,
}

/// Longest member id kept, in bytes.
const MAX_MEMBER_BYTES: usize = 128;

/// Member sets per project, bounded per project.
#[derive(Clone, Debug)]
pub(crate) struct Presence {
    max_members: usize,
    projects: BTreeMap<u64, BTreeSet<String>>,
    truncated: u64,
}

impl Presence {
    /// No members known; at most `max_members` kept per project.
    pub(crate) fn new(max_members: usize) -> Self {
        Presence {
            max_members,
            projects: BTreeMap::new(),
            truncated: 0,
        }
    }

    /// Members of a project, sorted.
    pub(crate) fn members(&self, project_id: u64) -> Vec<String> {
        self.projects
            .get(&project_id)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Replaces a project's members; a change if the set differs.
    pub(crate) fn on_state(
        &mut self,
        project_id: u64,
        members: Vec<String>,
    ) -> Option<PresenceChange> {
        let next: BTreeSet<String> = members.into_iter().filter(|m| valid(m)).collect();
        self.replace(project_id, next)
    }

    /// Applies leaves, then joins; a change if the set differs.
    pub(crate) fn on_diff(
        &mut self,
        project_id: u64,
        joins: Vec<String>,
        leaves: Vec<String>,
    ) -> Option<PresenceChange> {
        let mut next = self.projects.get(&project_id).cloned().unwrap_or_default();
        for l in &leaves {
            next.remove(l);
        }
        next.extend(joins.into_iter().filter(|m| valid(m)));
        self.replace(project_id, next)
    }

    /// Forgets a project (left it); a change if it had members.
    pub(crate) fn forget(&mut self, project_id: u64) -> Option<PresenceChange> {
        let had = self.projects.remove(&project_id)?;
        (!had.is_empty()).then(|| PresenceChange {
            project_id,
            members: Vec::new(),
        })
    }

    /// Forgets everything (disconnected); a change for each project that had members.
    pub(crate) fn clear(&mut self) -> Vec<PresenceChange> {
        std::mem::take(&mut self.projects)
            .into_iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(project_id, _)| PresenceChange {
                project_id,
                members: Vec::new(),
            })
            .collect()
    }

    /// Members dropped because a project exceeded its cap.
    #[cfg(test)]
    pub(crate) fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Installs `next` (capped) as the project's members; a change if it differs.
    fn replace(&mut self, project_id: u64, mut next: BTreeSet<String>) -> Option<PresenceChange> {
        while next.len() > self.max_members {
            next.pop_last();
            self.truncated += 1;
        }
        let prev = self.projects.get(&project_id);
        if prev == Some(&next) || (prev.is_none() && next.is_empty()) {
            return None;
        }
        let members = next.iter().cloned().collect();
        self.projects.insert(project_id, next);
        Some(PresenceChange {
            project_id,
            members,
        })
    }
}

impl From<PresenceChange> for Event {
    fn from(change: PresenceChange) -> Event {
        Event::Presence {
            project_id: change.project_id,
            members: change.members,
        }
    }
}

impl Feature for Presence {
    /// Applies `presence_state` snapshots and `presence_diff`s; both are delivered too.
    fn on_message(&mut self, _now: Timestamp, env: &Envelope, fx: &mut Effects) -> Verdict {
        let is_state = match env.msg_type.as_str() {
            "presence_state" => true,
            "presence_diff" => false,
            _ => return Verdict::Deliver,
        };
        let Some(project_id) = env.project_id else {
            fx.push(Effect::ProtocolError(format!(
                "invalid {}: needs projectId",
                env.msg_type
            )));
            return Verdict::Deliver;
        };
        let change = if is_state {
            env.data_as::<wire::PresenceState>()
                .map(|d| self.on_state(project_id, d.members))
        } else {
            env.data_as::<wire::PresenceDiff>()
                .map(|d| self.on_diff(project_id, d.joins, d.leaves))
        };
        match change {
            Ok(Some(c)) => fx.push(Effect::Emit(c.into())),
            Ok(None) => {}
            Err(e) => fx.push(Effect::ProtocolError(format!(
                "invalid {}: {e}",
                env.msg_type
            ))),
        }
        Verdict::Deliver
    }

    /// Who is present is unknown until we are back: forget it rather than show it stale.
    fn on_link_down(&mut self, fx: &mut Effects) {
        fx.extend(self.clear().into_iter().map(|c| Effect::Emit(c.into())));
    }
}

/// Whether a member id is worth keeping (not empty, not too long).
fn valid(member: &str) -> bool {
    !member.is_empty() && member.len() <= MAX_MEMBER_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn state_and_diffs_report_only_changes() {
        let mut p = Presence::new(100);
        let c = p.on_state(1, v(&["bob", "ann", "bob", ""])).unwrap();
        assert_eq!(c.members, v(&["ann", "bob"]));
        assert_eq!(p.on_state(1, v(&["bob", "ann"])), None);
        assert_eq!(
            p.on_diff(1, v(&["cy"]), v(&["ann"])).unwrap().members,
            v(&["bob", "cy"])
        );
        // Leave then join the same user: still present, no change.
        assert_eq!(p.on_diff(1, v(&["bob"]), v(&["bob"])), None);
        assert_eq!(p.members(1), v(&["bob", "cy"]));
        assert_eq!(p.on_diff(2, v(&[]), v(&["ghost"])), None);
    }

    #[test]
    fn forget_clear_and_cap() {
        let mut p = Presence::new(2);
        p.on_state(1, v(&["a", "b", "c"]));
        assert_eq!(p.members(1), v(&["a", "b"]));
        assert_eq!(p.truncated(), 1);
        p.on_state(2, v(&["z"]));
        p.on_state(3, v(&[]));
        let cleared: Vec<u64> = p.clear().iter().map(|c| c.project_id).collect();
        assert_eq!(cleared, vec![1, 2]);
        assert!(p.members(1).is_empty());
        p.on_state(4, v(&["x"]));
        assert_eq!(p.forget(4).unwrap().members, Vec::<String>::new());
        assert_eq!(p.forget(4), None);
    }
}
