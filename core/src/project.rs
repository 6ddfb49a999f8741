//! Project sync: joined projects and the last version applied to each, with gap detection.

use std::collections::BTreeMap;

use serde_json::json;

use crate::event::{Event, ProjectState};
use crate::feature::{Effect, Effects, Feature, SessionFrame, Verdict};
use crate::timer::Timestamp;
use crate::wire::{self, Envelope};

/// Why a project could not be joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProjectError {
    /// The session already follows `max` projects.
    TooMany { max: usize },
}

/// What to do with a `project_updated` version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpdateVerdict {
    /// Not a joined project: deliver untracked.
    NotJoined,
    /// The next version (or the first seen): deliver.
    Deliver,
    /// Not newer than `last`: withhold.
    Stale { last: u64 },
    /// Versions after `from` were skipped: deliver, report the gap, ask for `from_version` onwards.
    Gap {
        from: u64,
        to: u64,
        from_version: u64,
    },
}

/// What a `project_snapshot` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SnapshotVerdict {
    /// Not a joined project.
    NotJoined,
    /// The project's state is now complete at `version`.
    Synced { version: u64 },
}

#[derive(Clone, Copy, Debug, Default)]
struct Tracked {
    version: Option<u64>,
    stale: bool,
}

/// The joined projects; membership survives reconnects, versions survive until a snapshot says otherwise.
#[derive(Clone, Debug)]
pub(crate) struct Projects {
    max: usize,
    joined: BTreeMap<u64, Tracked>,
}

impl Projects {
    /// No joined projects; at most `max` may be joined.
    pub(crate) fn new(max: usize) -> Self {
        Projects {
            max,
            joined: BTreeMap::new(),
        }
    }

    /// Joins; true if newly joined.
    pub(crate) fn join(&mut self, project_id: u64) -> Result<bool, ProjectError> {
        if self.joined.contains_key(&project_id) {
            return Ok(false);
        }
        if self.joined.len() >= self.max {
            return Err(ProjectError::TooMany { max: self.max });
        }
        self.joined.insert(project_id, Tracked::default());
        Ok(true)
    }

    /// Leaves; true if it was joined.
    pub(crate) fn leave(&mut self, project_id: u64) -> bool {
        self.joined.remove(&project_id).is_some()
    }

    /// Whether the project is joined.
    pub(crate) fn is_joined(&self, project_id: u64) -> bool {
        self.joined.contains_key(&project_id)
    }

    /// Joined projects, ascending.
    pub(crate) fn joined(&self) -> Vec<u64> {
        self.joined.keys().copied().collect()
    }

    /// The last version applied.
    pub(crate) fn version(&self, project_id: u64) -> Option<u64> {
        self.joined.get(&project_id).and_then(|t| t.version)
    }

    /// Whether versions were skipped since the last snapshot.
    #[cfg(test)]
    pub(crate) fn is_stale(&self, project_id: u64) -> bool {
        self.joined.get(&project_id).is_some_and(|t| t.stale)
    }

    /// Classifies a `project_updated` version and records it if applied.
    pub(crate) fn on_update(&mut self, project_id: u64, version: u64) -> UpdateVerdict {
        let Some(t) = self.joined.get_mut(&project_id) else {
            return UpdateVerdict::NotJoined;
        };
        let verdict = match t.version {
            None => UpdateVerdict::Deliver,
            Some(last) if version <= last => return UpdateVerdict::Stale { last },
            Some(last) if version == last + 1 => UpdateVerdict::Deliver,
            Some(last) => {
                t.stale = true;
                UpdateVerdict::Gap {
                    from: last,
                    to: version,
                    from_version: last + 1,
                }
            }
        };
        t.version = Some(version);
        verdict
    }

    /// A snapshot is authoritative: it sets the version even if lower, and clears staleness.
    pub(crate) fn on_snapshot(&mut self, project_id: u64, version: u64) -> SnapshotVerdict {
        let Some(t) = self.joined.get_mut(&project_id) else {
            return SnapshotVerdict::NotJoined;
        };
        t.version = Some(version);
        t.stale = false;
        SnapshotVerdict::Synced { version }
    }
}

impl Feature for Projects {
    /// Tracks the versions of joined projects: a stale update is withheld, a gap is reported and
    /// answered with a sync request.
    fn on_message(&mut self, _now: Timestamp, env: &Envelope, fx: &mut Effects) -> Verdict {
        let is_snapshot = match env.msg_type.as_str() {
            "project_updated" => false,
            "project_snapshot" => true,
            _ => return Verdict::Deliver,
        };
        // Versions are only tracked for joined projects; skip parsing the payload otherwise.
        if !env.project_id.is_some_and(|p| self.is_joined(p)) {
            return Verdict::Deliver;
        }
        let (Some(project_id), Ok(d)) = (env.project_id, env.data_as::<wire::Versioned>()) else {
            fx.push(Effect::ProtocolError(format!(
                "invalid {}: needs projectId and data.version",
                env.msg_type
            )));
            return Verdict::Deliver;
        };
        if is_snapshot {
            if let SnapshotVerdict::Synced { version } = self.on_snapshot(project_id, d.version) {
                fx.push(Effect::Emit(Event::Project {
                    project_id,
                    version,
                    state: ProjectState::Synced,
                }));
            }
            return Verdict::Deliver;
        }
        match self.on_update(project_id, d.version) {
            UpdateVerdict::NotJoined | UpdateVerdict::Deliver => Verdict::Deliver,
            UpdateVerdict::Stale { .. } => {
                fx.push(Effect::Stale);
                Verdict::Withhold
            }
            UpdateVerdict::Gap {
                from,
                to,
                from_version,
            } => {
                fx.push(Effect::Emit(Event::Gap {
                    project_id: Some(project_id),
                    from,
                    to,
                }));
                fx.push(Effect::Emit(Event::Project {
                    project_id,
                    version: to,
                    state: ProjectState::Stale,
                }));
                fx.push(Effect::Send(SessionFrame {
                    msg_type: "project_sync_request",
                    data: json!(wire::SyncRequest { from_version }),
                    project_id: Some(project_id),
                }));
                Verdict::Deliver
            }
        }
    }

    /// Re-joins every joined project on the new link (membership survives reconnects).
    fn on_welcome(&mut self, fx: &mut Effects) {
        for project_id in self.joined() {
            fx.push(Effect::Queue(subscribe_frame(project_id)));
        }
    }
}

/// The `project_subscribe` frame that joins `project_id` on the server.
pub(crate) fn subscribe_frame(project_id: u64) -> SessionFrame {
    SessionFrame {
        msg_type: "project_subscribe",
        data: json!({}),
        project_id: Some(project_id),
    }
}

/// The `project_unsubscribe` frame that leaves `project_id` on the server.
pub(crate) fn unsubscribe_frame(project_id: u64) -> SessionFrame {
    SessionFrame {
        msg_type: "project_unsubscribe",
        data: json!({}),
        project_id: Some(project_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_in_order_gaps_and_stale() {
        let mut p = Projects::new(8);
        assert_eq!(p.on_update(1, 5), UpdateVerdict::NotJoined);
        assert_eq!(p.join(1), Ok(true));
        assert_eq!(p.join(1), Ok(false));
        assert_eq!(p.on_update(1, 5), UpdateVerdict::Deliver);
        assert_eq!(p.on_update(1, 6), UpdateVerdict::Deliver);
        assert_eq!(p.on_update(1, 6), UpdateVerdict::Stale { last: 6 });
        assert_eq!(p.on_update(1, 3), UpdateVerdict::Stale { last: 6 });
        assert_eq!(
            p.on_update(1, 9),
            UpdateVerdict::Gap {
                from: 6,
                to: 9,
                from_version: 7
            }
        );
        assert!(p.is_stale(1));
        assert_eq!(p.on_update(1, 8), UpdateVerdict::Stale { last: 9 });
        assert_eq!(p.on_snapshot(1, 8), SnapshotVerdict::Synced { version: 8 });
        assert!(!p.is_stale(1));
        assert_eq!(p.on_update(1, 9), UpdateVerdict::Deliver);
        assert_eq!(p.version(1), Some(9));
    }

    #[test]
    fn app_sees_strictly_increasing_versions_between_snapshots() {
        let seqs: [&[u64]; 4] = [
            &[1, 2, 2, 3, 1, 5, 4, 6, 6, 9],
            &[10, 9, 8, 11, 11, 20],
            &[3, 3, 3],
            &[1, 5, 2, 6, 3, 7],
        ];
        for seq in seqs {
            let mut p = Projects::new(1);
            p.join(7).unwrap();
            let mut seen = Vec::new();
            for &v in seq {
                if matches!(
                    p.on_update(7, v),
                    UpdateVerdict::Deliver | UpdateVerdict::Gap { .. }
                ) {
                    seen.push(v);
                }
            }
            assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seq:?} -> {seen:?}");
        }
    }

    #[test]
    fn cap_and_rejoin_forgets_version() {
        let mut p = Projects::new(1);
        p.join(1).unwrap();
        assert_eq!(p.join(2), Err(ProjectError::TooMany { max: 1 }));
        p.on_update(1, 4);
        assert!(p.leave(1));
        assert!(!p.leave(1));
        p.join(1).unwrap();
        assert_eq!(p.version(1), None);
        assert_eq!(p.on_snapshot(2, 1), SnapshotVerdict::NotJoined);
        assert_eq!(p.joined(), vec![1]);
    }
}
