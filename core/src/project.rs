//! Joined projects: each one's position in its log (epoch and last offset applied), the join
//! in flight, and the last state version applied, with gap detection.

use std::collections::BTreeMap;

use serde_json::json;

use crate::event::{Event, ProjectState};
use crate::feature::{Effect, Effects, Feature, SessionFrame, Verdict};
use crate::timer::{TimerKind, Timestamp};
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

/// Where the client is in a project's log: the last message applied, in that log's epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    /// The log's epoch.
    pub(crate) epoch: String,
    /// The last offset applied.
    pub(crate) offset: u64,
}

/// What an inbound project message's position means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OffsetVerdict {
    /// Not a joined project: deliver it untracked.
    Untracked,
    /// The next message: deliver it (the position moved to it).
    Next,
    /// At or below the position: a repeat, withhold it.
    Duplicate,
    /// The join's answer has not come yet: withhold it (the answer's replay carries it).
    Joining,
    /// Messages after `from` were skipped (`to` arrived), or the epoch is another: withhold it
    /// and join again from the position, which replays them in order.
    Gap { from: u64, to: u64 },
}

#[derive(Clone, Debug, Default)]
struct Tracked {
    version: Option<u64>,
    stale: bool,
    position: Option<Position>,
    /// A `project_subscribe` is out and its `project_joined` has not come: when to ask again.
    joining: Option<Timestamp>,
    /// That subscribe carried a position (the answer says whether it was recovered).
    recovering: bool,
}

/// The joined projects; membership survives reconnects, versions survive until a snapshot says otherwise.
#[derive(Clone, Debug)]
pub(crate) struct Projects {
    max: usize,
    /// How long a join may wait for its answer before it is asked again.
    join_timeout_ms: u64,
    joined: BTreeMap<u64, Tracked>,
}

impl Projects {
    /// No joined projects; at most `max` may be joined, each join answered within
    /// `join_timeout_ms` or asked again.
    pub(crate) fn new(max: usize, join_timeout_ms: u64) -> Self {
        Projects {
            max,
            join_timeout_ms: join_timeout_ms.max(1),
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

    /// The project's log position, once a join was answered.
    #[cfg(test)]
    pub(crate) fn position(&self, project_id: u64) -> Option<&Position> {
        self.joined
            .get(&project_id)
            .and_then(|t| t.position.as_ref())
    }

    /// The `project_subscribe` frame that joins `project_id` on this link, from its position if
    /// it has one; messages of the project are withheld until the answer.
    pub(crate) fn subscribe(&mut self, project_id: u64, now: Timestamp) -> SessionFrame {
        let mut data = wire::Subscribe::default();
        if let Some(t) = self.joined.get_mut(&project_id) {
            t.joining = Some(now.add_ms(self.join_timeout_ms));
            t.recovering = t.position.is_some();
            if let Some(p) = &t.position {
                data.epoch = Some(p.epoch.clone());
                data.offset = Some(p.offset);
            }
        }
        SessionFrame {
            msg_type: "project_subscribe",
            data: json!(data),
            project_id: Some(project_id),
        }
    }

    /// Classifies a project message at `epoch`/`offset` (inbound, or the ack of the client's own)
    /// and moves the position when it is the next one.
    pub(crate) fn on_offset(&mut self, project_id: u64, epoch: &str, offset: u64) -> OffsetVerdict {
        let Some(t) = self.joined.get_mut(&project_id) else {
            return OffsetVerdict::Untracked;
        };
        if t.joining.is_some() {
            return OffsetVerdict::Joining;
        }
        let Some(p) = t.position.as_mut() else {
            return OffsetVerdict::Untracked;
        };
        if p.epoch != epoch {
            return OffsetVerdict::Gap {
                from: p.offset,
                to: offset,
            };
        }
        if offset <= p.offset {
            return OffsetVerdict::Duplicate;
        }
        if offset == p.offset + 1 {
            p.offset = offset;
            return OffsetVerdict::Next;
        }
        OffsetVerdict::Gap {
            from: p.offset,
            to: offset,
        }
    }

    /// The hub answered a join: the position to continue from; the `rejoined` event when the
    /// client had asked to recover.
    pub(crate) fn on_joined(&mut self, project_id: u64, joined: wire::Joined) -> Option<Event> {
        let t = self.joined.get_mut(&project_id)?;
        t.joining.take()?;
        t.position = Some(Position {
            epoch: joined.epoch,
            offset: joined.offset,
        });
        let asked = std::mem::take(&mut t.recovering);
        asked.then(|| Event::Rejoined {
            project_id,
            recovered: joined.recovered.unwrap_or(false),
            replayed: joined.replayed.unwrap_or(0),
            reason: joined.reason,
        })
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
            "project_joined" => {
                // The protocol's own answer: it moves the position, the application hears
                // `rejoined` (when it asked to recover), never the frame.
                match (env.project_id, env.data_as::<wire::Joined>()) {
                    (Some(p), Ok(joined)) => {
                        if let Some(event) = self.on_joined(p, joined) {
                            fx.push(Effect::Emit(event));
                        }
                    }
                    (_, Err(e)) => fx.push(Effect::ProtocolError(format!(
                        "invalid project_joined: {e}"
                    ))),
                    (None, _) => fx.push(Effect::ProtocolError(
                        "invalid project_joined: needs projectId".into(),
                    )),
                }
                return Verdict::Withhold;
            }
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
                to, from_version, ..
            } => {
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

    /// Re-joins every joined project on the new link from its position (membership survives
    /// reconnects; the hub replays what was missed or says it cannot).
    fn on_welcome(&mut self, now: Timestamp, fx: &mut Effects) {
        for project_id in self.joined() {
            let frame = self.subscribe(project_id, now);
            fx.push(Effect::Queue(frame));
        }
    }

    /// A join in flight on a lost link is answered on the next one.
    fn on_link_down(&mut self, _fx: &mut Effects) {
        for t in self.joined.values_mut() {
            t.joining = None;
            t.recovering = false;
        }
    }

    fn timer(&self) -> Option<TimerKind> {
        Some(TimerKind::ProjectJoin)
    }

    fn due_at(&self) -> Option<Timestamp> {
        self.joined.values().filter_map(|t| t.joining).min()
    }

    /// A join whose answer never came (lost on the way) is asked again, from the same position.
    fn on_timer(&mut self, now: Timestamp, fx: &mut Effects) {
        let overdue: Vec<u64> = self
            .joined
            .iter()
            .filter(|(_, t)| t.joining.is_some_and(|at| at <= now))
            .map(|(p, _)| *p)
            .collect();
        for project_id in overdue {
            let frame = self.subscribe(project_id, now);
            fx.push(Effect::Send(frame));
        }
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
        let mut p = Projects::new(8, 1000);
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
            let mut p = Projects::new(1, 1000);
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
    fn positions_move_one_offset_at_a_time_and_a_hole_or_another_epoch_asks_to_rejoin() {
        let mut p = Projects::new(4, 1000);
        assert_eq!(p.on_offset(1, "e", 1), OffsetVerdict::Untracked);
        p.join(1).unwrap();
        let first = p.subscribe(1, Timestamp::ZERO);
        assert_eq!(
            first.data,
            json!({}),
            "a first join has no position to recover"
        );
        assert_eq!(p.on_offset(1, "e", 1), OffsetVerdict::Joining);
        let answer = |offset, recovered: Option<bool>| wire::Joined {
            epoch: "e".into(),
            offset,
            recovered,
            replayed: recovered.map(|_| 0),
            reason: None,
        };
        assert_eq!(
            p.on_joined(1, answer(4, None)),
            None,
            "no rejoined event for a first join"
        );
        assert_eq!(p.on_offset(1, "e", 4), OffsetVerdict::Duplicate);
        assert_eq!(p.on_offset(1, "e", 5), OffsetVerdict::Next);
        assert_eq!(
            p.on_offset(1, "e", 7),
            OffsetVerdict::Gap { from: 5, to: 7 }
        );
        assert_eq!(
            p.on_offset(1, "f", 6),
            OffsetVerdict::Gap { from: 5, to: 6 }
        );
        assert_eq!(
            p.position(1).map(|q| q.offset),
            Some(5),
            "a hole moves nothing"
        );
        let again = p.subscribe(1, Timestamp::ZERO);
        assert_eq!(again.data, json!({"epoch": "e", "offset": 5}));
        assert_eq!(p.on_offset(1, "e", 6), OffsetVerdict::Joining);
        let event = p.on_joined(1, answer(5, Some(true)));
        assert!(
            matches!(
                event,
                Some(Event::Rejoined {
                    recovered: true,
                    ..
                })
            ),
            "{event:?}"
        );
        assert_eq!(p.on_offset(1, "e", 6), OffsetVerdict::Next);
    }

    #[test]
    fn cap_and_rejoin_forgets_version() {
        let mut p = Projects::new(1, 1000);
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
