//! Typing indicators: throttled local start/stop signals and expiring remote typist sets.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use serde_json::json;

use crate::config::TypingConfig;
use crate::event::Event;
use crate::feature::{Effect, Effects, Feature, Verdict};
use crate::input::SendRequest;
use crate::outbox::Delivery;
use crate::timer::{TimerKind, Timestamp};
use crate::wire::{self, Envelope};

/// Most projects the local user can be typing in at once.
pub(crate) const MAX_LOCAL_PROJECTS: usize = 256;
/// Most remote (project, user) typing entries held in total.
pub(crate) const MAX_REMOTE_ENTRIES: usize = 1024;
/// Longest accepted remote user id, in bytes.
pub(crate) const MAX_USER_ID_BYTES: usize = 128;

/// A typing signal the local user should send to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LocalSend {
    /// The local user is typing in the project.
    Start { project_id: u64 },
    /// The local user stopped typing in the project.
    Stop { project_id: u64 },
}

/// The new full set of remote typists in a project after it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TypingChange {
    /// The project whose typist set changed.
    pub(crate) project_id: u64,
    /// Everyone now typing there, sorted.
    pub(crate) users: Vec<String>,
}

/// Everything that fell due in one `on_timeout` call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TypingTimeout {
    /// Idle stops to send, in ascending project order.
    pub(crate) sends: Vec<LocalSend>,
    /// Projects whose typist set shrank, in ascending project order.
    pub(crate) changes: Vec<TypingChange>,
}

/// Local typing state for one project.
#[derive(Debug, Clone, Copy)]
struct LocalEntry {
    last_sent: Timestamp,
    idle_at: Timestamp,
}

/// Typing-indicator state for both the local user and remote users.
#[derive(Debug, Clone)]
pub(crate) struct Typing {
    cfg: TypingConfig,
    /// The local user: the sender of local signals, and whose echoes are ignored.
    user_id: Option<String>,
    // At most MAX_LOCAL_PROJECTS entries, so a linear scan for the idle deadline is cheap.
    local: BTreeMap<u64, LocalEntry>,
    // One ordered expiry queue for every remote typist; `remote` is its index and always
    // holds exactly the same (project, user) pairs, each with the timestamp queued here.
    expiries: BTreeSet<(Timestamp, u64, String)>,
    remote: BTreeMap<(u64, String), Timestamp>,
}

impl Typing {
    /// Creates empty typing state.
    pub(crate) fn new(cfg: TypingConfig) -> Self {
        Typing {
            cfg,
            user_id: None,
            local: BTreeMap::new(),
            expiries: BTreeSet::new(),
            remote: BTreeMap::new(),
        }
    }

    /// Sets the local user (without one, no signal is ever sent).
    pub(crate) fn with_user(mut self, user_id: Option<String>) -> Self {
        self.user_id = user_id;
        self
    }

    /// Records a local keystroke in `project_id`; returns a start signal unless throttled.
    pub(crate) fn start_typing(&mut self, now: Timestamp, project_id: u64) -> Option<LocalSend> {
        let idle_at = now.add_ms(self.cfg.idle_ms);
        if let Some(entry) = self.local.get_mut(&project_id) {
            entry.idle_at = idle_at;
            if now >= entry.last_sent.add_ms(self.cfg.throttle_ms) {
                entry.last_sent = now;
                return Some(LocalSend::Start { project_id });
            }
            return None;
        }
        if self.local.len() >= MAX_LOCAL_PROJECTS {
            // Untracked, so no Stop will ever be owed for it either.
            return None;
        }
        self.local.insert(
            project_id,
            LocalEntry {
                last_sent: now,
                idle_at,
            },
        );
        Some(LocalSend::Start { project_id })
    }

    /// Ends local typing in `project_id`; returns a stop signal if it was typing there.
    pub(crate) fn stop_typing(&mut self, _now: Timestamp, project_id: u64) -> Option<LocalSend> {
        self.local
            .remove(&project_id)
            .map(|_| LocalSend::Stop { project_id })
    }

    /// Forgets all local typing without sending anything (on disconnect).
    pub(crate) fn reset_local(&mut self) {
        self.local.clear();
    }

    /// Marks a remote user as typing in a project; returns the new set if the user is new.
    pub(crate) fn remote_start(
        &mut self,
        now: Timestamp,
        project_id: u64,
        user_id: &str,
    ) -> Option<TypingChange> {
        if user_id.len() > MAX_USER_ID_BYTES {
            return None;
        }
        let expires_at = now.add_ms(self.cfg.expire_ms);
        let key = (project_id, user_id.to_owned());
        if let Some(old) = self.remote.get_mut(&key) {
            // Refresh: drop the old queue entry so it cannot expire the user early.
            let previous = std::mem::replace(old, expires_at);
            self.expiries
                .remove(&(previous, project_id, user_id.to_owned()));
            self.expiries
                .insert((expires_at, project_id, user_id.to_owned()));
            return None;
        }
        if self.remote.len() >= MAX_REMOTE_ENTRIES {
            // Never evict someone who is typing to make room for a newcomer.
            return None;
        }
        self.remote.insert(key, expires_at);
        self.expiries
            .insert((expires_at, project_id, user_id.to_owned()));
        Some(self.change(project_id))
    }

    /// Marks a remote user as no longer typing; returns the new set if the user was present.
    pub(crate) fn remote_stop(&mut self, project_id: u64, user_id: &str) -> Option<TypingChange> {
        let expires_at = self.remote.remove(&(project_id, user_id.to_owned()))?;
        self.expiries
            .remove(&(expires_at, project_id, user_id.to_owned()));
        Some(self.change(project_id))
    }

    /// The remote users typing in `project_id`, sorted.
    pub(crate) fn users(&self, project_id: u64) -> Vec<String> {
        self.remote
            .range((
                Bound::Included((project_id, String::new())),
                Bound::Unbounded,
            ))
            .take_while(|((p, _), _)| *p == project_id)
            .map(|((_, u), _)| u.clone())
            .collect()
    }

    /// Forgets every remote typist; returns an empty set for each project that had any.
    pub(crate) fn clear_remote(&mut self) -> Vec<TypingChange> {
        let projects: BTreeSet<u64> = self.remote.keys().map(|(p, _)| *p).collect();
        self.remote.clear();
        self.expiries.clear();
        projects
            .into_iter()
            .map(|project_id| TypingChange {
                project_id,
                users: Vec::new(),
            })
            .collect()
    }

    /// Fires every local idle stop and remote expiry due at `now`.
    pub(crate) fn on_timeout(&mut self, now: Timestamp) -> TypingTimeout {
        let idle: Vec<u64> = self
            .local
            .iter()
            .filter(|(_, e)| e.idle_at <= now)
            .map(|(&p, _)| p)
            .collect();
        for p in &idle {
            self.local.remove(p);
        }
        let sends = idle
            .into_iter()
            .map(|project_id| LocalSend::Stop { project_id })
            .collect();

        // Collect changed projects in a set so each is reported once, in ascending order.
        let mut changed = BTreeSet::new();
        while let Some(first) = self.expiries.first() {
            if first.0 > now {
                break;
            }
            if let Some((_, project_id, user)) = self.expiries.pop_first() {
                self.remote.remove(&(project_id, user));
                changed.insert(project_id);
            }
        }
        let changes = changed.into_iter().map(|p| self.change(p)).collect();

        TypingTimeout { sends, changes }
    }

    /// The earliest local idle deadline or remote expiry.
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        let local = self.local.values().map(|e| e.idle_at).min();
        let remote = self.expiries.first().map(|(t, _, _)| *t);
        match (local, remote) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The current typist set of `project_id`, as a change to report.
    fn change(&self, project_id: u64) -> TypingChange {
        TypingChange {
            project_id,
            users: self.users(project_id),
        }
    }
}

impl From<TypingChange> for Event {
    fn from(change: TypingChange) -> Event {
        Event::Typing {
            project_id: change.project_id,
            users: change.users,
        }
    }
}

impl Typing {
    /// Pushes the volatile message carrying a local signal (none without a local user).
    pub(crate) fn signal(&self, send: LocalSend, fx: &mut Effects) {
        let Some(user_id) = &self.user_id else {
            return;
        };
        let (msg_type, project_id) = match send {
            LocalSend::Start { project_id } => ("user_typing_start", project_id),
            LocalSend::Stop { project_id } => ("user_typing_stop", project_id),
        };
        // Coalesced per project: only the latest signal for a project is worth sending.
        let req = SendRequest::new(msg_type, json!({ "userId": user_id }))
            .project(project_id)
            .delivery(Delivery::Volatile)
            .coalesce(format!("typing:{project_id}"));
        fx.push(Effect::Volatile(req));
    }
}

impl Feature for Typing {
    fn timer(&self) -> Option<TimerKind> {
        Some(TimerKind::Typing)
    }

    fn due_at(&self) -> Option<Timestamp> {
        self.next_deadline()
    }

    /// Sends the idle stops that fell due, then reports the typists that expired.
    fn on_timer(&mut self, now: Timestamp, fx: &mut Effects) {
        let due = self.on_timeout(now);
        for send in due.sends {
            self.signal(send, fx);
        }
        fx.extend(due.changes.into_iter().map(|c| Effect::Emit(c.into())));
    }

    /// Tracks remote `user_typing_start`/`user_typing_stop`; both are delivered too.
    fn on_message(&mut self, now: Timestamp, env: &Envelope, fx: &mut Effects) -> Verdict {
        let start = match env.msg_type.as_str() {
            "user_typing_start" => true,
            "user_typing_stop" => false,
            _ => return Verdict::Deliver,
        };
        let (Some(project_id), Ok(d)) = (env.project_id, env.data_as::<wire::TypingData>()) else {
            fx.push(Effect::ProtocolError(format!(
                "invalid {}: needs projectId and data.userId",
                env.msg_type
            )));
            return Verdict::Deliver;
        };
        if self.user_id.as_deref() == Some(d.user_id.as_str()) {
            return Verdict::Deliver; // our own echo
        }
        let change = if start {
            self.remote_start(now, project_id, &d.user_id)
        } else {
            self.remote_stop(project_id, &d.user_id)
        };
        fx.extend(change.map(|c| Effect::Emit(c.into())));
        Verdict::Deliver
    }

    /// What peers were typing is unknown until we are back: forget it rather than show it
    /// stale; local typing starts over on the new link.
    fn on_link_down(&mut self, fx: &mut Effects) {
        self.reset_local();
        fx.extend(
            self.clear_remote()
                .into_iter()
                .map(|c| Effect::Emit(c.into())),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn typing() -> Typing {
        Typing::new(TypingConfig::default())
    }

    fn start(p: u64) -> Option<LocalSend> {
        Some(LocalSend::Start { project_id: p })
    }

    fn stop(p: u64) -> Option<LocalSend> {
        Some(LocalSend::Stop { project_id: p })
    }

    fn change(p: u64, users: &[&str]) -> TypingChange {
        TypingChange {
            project_id: p,
            users: users.iter().map(|u| u.to_string()).collect(),
        }
    }

    #[test]
    fn config_defaults_and_serde() {
        let cfg: TypingConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg, TypingConfig::default());
        assert_eq!(
            (cfg.throttle_ms, cfg.idle_ms, cfg.expire_ms),
            (3000, 5000, 6000)
        );
        let cfg: TypingConfig = serde_json::from_str(r#"{"idle_ms":7}"#).unwrap();
        assert_eq!(cfg.idle_ms, 7);
        assert_eq!(cfg.throttle_ms, 3000);
        assert!(serde_json::from_str::<TypingConfig>(r#"{"idle":7}"#).is_err());
    }

    #[test]
    fn start_is_throttled() {
        let mut ty = typing();
        assert_eq!(ty.start_typing(t(0), 1), start(1));
        assert_eq!(ty.start_typing(t(1000), 1), None);
        assert_eq!(ty.start_typing(t(2999), 1), None);
        assert_eq!(ty.start_typing(t(3000), 1), start(1));
        // The throttle window restarts from the last send, not the first keystroke.
        assert_eq!(ty.start_typing(t(5999), 1), None);
        assert_eq!(ty.start_typing(t(6000), 1), start(1));
        // Other projects are throttled independently.
        assert_eq!(ty.start_typing(t(6001), 2), start(2));
    }

    #[test]
    fn idle_stop_fires_once_at_exactly_idle_ms() {
        let mut ty = typing();
        ty.start_typing(t(0), 7);
        assert_eq!(ty.next_deadline(), Some(t(5000)));
        assert_eq!(ty.on_timeout(t(4999)), TypingTimeout::default());
        let out = ty.on_timeout(t(5000));
        assert_eq!(out.sends, vec![LocalSend::Stop { project_id: 7 }]);
        assert!(out.changes.is_empty());
        assert_eq!(ty.on_timeout(t(9000)), TypingTimeout::default());
        assert_eq!(ty.next_deadline(), None);
        // Idle already stopped it, so an explicit stop has nothing to send.
        assert_eq!(ty.stop_typing(t(9000), 7), None);
        // Typing again after the idle stop is a fresh start, not throttled.
        assert_eq!(ty.start_typing(t(9001), 7), start(7));
    }

    #[test]
    fn keystrokes_push_idle_deadline_even_when_throttled() {
        let mut ty = typing();
        ty.start_typing(t(0), 1);
        assert_eq!(ty.start_typing(t(2000), 1), None);
        assert_eq!(ty.next_deadline(), Some(t(7000)));
        assert!(ty.on_timeout(t(5000)).sends.is_empty());
        assert_eq!(
            ty.on_timeout(t(7000)).sends,
            vec![LocalSend::Stop { project_id: 1 }]
        );
    }

    #[test]
    fn stop_after_stop_is_none() {
        let mut ty = typing();
        assert_eq!(ty.stop_typing(t(0), 1), None);
        ty.start_typing(t(0), 1);
        assert_eq!(ty.stop_typing(t(10), 1), stop(1));
        assert_eq!(ty.stop_typing(t(20), 1), None);
        assert_eq!(ty.next_deadline(), None);
        // A start right after a stop is sent at once.
        assert_eq!(ty.start_typing(t(30), 1), start(1));
    }

    #[test]
    fn reset_local_forgets_without_sending() {
        let mut ty = typing();
        ty.start_typing(t(0), 1);
        ty.start_typing(t(0), 2);
        ty.remote_start(t(0), 1, "bob");
        ty.reset_local();
        assert_eq!(ty.stop_typing(t(1), 1), None);
        assert_eq!(ty.next_deadline(), Some(t(6000)));
        let out = ty.on_timeout(t(6000));
        assert!(out.sends.is_empty());
        assert_eq!(out.changes, vec![change(1, &[])]);
        assert_eq!(ty.start_typing(t(100), 1), start(1));
    }

    #[test]
    fn local_projects_are_bounded() {
        let mut ty = typing();
        for p in 0..MAX_LOCAL_PROJECTS as u64 {
            assert_eq!(ty.start_typing(t(0), p), start(p));
        }
        assert_eq!(ty.start_typing(t(0), 9999), None);
        assert_eq!(ty.stop_typing(t(0), 9999), None);
        // Existing projects keep working and freeing one makes room.
        assert_eq!(ty.start_typing(t(3000), 0), start(0));
        assert_eq!(ty.stop_typing(t(3000), 0), stop(0));
        assert_eq!(ty.start_typing(t(3000), 9999), start(9999));
    }

    #[test]
    fn remote_start_and_stop_report_only_changes() {
        let mut ty = typing();
        assert_eq!(
            ty.remote_start(t(0), 5, "carol"),
            Some(change(5, &["carol"]))
        );
        assert_eq!(
            ty.remote_start(t(0), 5, "alice"),
            Some(change(5, &["alice", "carol"]))
        );
        assert_eq!(ty.remote_start(t(100), 5, "alice"), None);
        assert_eq!(
            ty.remote_start(t(0), 6, "alice"),
            Some(change(6, &["alice"]))
        );
        assert_eq!(ty.users(5), vec!["alice", "carol"]);
        assert_eq!(ty.remote_stop(5, "carol"), Some(change(5, &["alice"])));
        assert_eq!(ty.remote_stop(5, "carol"), None);
        assert_eq!(ty.remote_stop(7, "alice"), None);
        assert_eq!(ty.users(7), Vec::<String>::new());
        assert_eq!(ty.users(6), vec!["alice"]);
    }

    #[test]
    fn users_handles_extreme_project_ids() {
        let mut ty = typing();
        ty.remote_start(t(0), u64::MAX, "a");
        ty.remote_start(t(0), 0, "b");
        assert_eq!(ty.users(u64::MAX), vec!["a"]);
        assert_eq!(ty.users(0), vec!["b"]);
        assert_eq!(ty.users(1), Vec::<String>::new());
    }

    #[test]
    fn remote_stop_removes_expiry_entry() {
        let mut ty = typing();
        ty.remote_start(t(0), 1, "a");
        ty.remote_stop(1, "a");
        assert_eq!(ty.next_deadline(), None);
        assert_eq!(ty.on_timeout(t(6000)), TypingTimeout::default());
    }

    #[test]
    fn expiry_removes_users_one_change_per_project() {
        let mut ty = typing();
        ty.remote_start(t(0), 2, "x");
        ty.remote_start(t(0), 2, "y");
        ty.remote_start(t(10), 2, "z");
        ty.remote_start(t(0), 1, "a");
        assert_eq!(ty.on_timeout(t(5999)), TypingTimeout::default());
        let out = ty.on_timeout(t(6000));
        assert!(out.sends.is_empty());
        assert_eq!(out.changes, vec![change(1, &[]), change(2, &["z"])]);
        assert_eq!(ty.users(2), vec!["z"]);
        assert_eq!(ty.next_deadline(), Some(t(6010)));
        // Re-adding an expired user is a change again.
        assert_eq!(
            ty.remote_start(t(6000), 2, "x"),
            Some(change(2, &["x", "z"]))
        );
    }

    #[test]
    fn refresh_extends_expiry() {
        let mut ty = typing();
        ty.remote_start(t(0), 1, "a");
        assert_eq!(ty.remote_start(t(4000), 1, "a"), None);
        assert_eq!(ty.next_deadline(), Some(t(10000)));
        // The stale 6000 entry must not expire the user.
        assert_eq!(ty.on_timeout(t(6000)), TypingTimeout::default());
        assert_eq!(ty.users(1), vec!["a"]);
        assert_eq!(ty.on_timeout(t(10000)).changes, vec![change(1, &[])]);
        assert_eq!(ty.next_deadline(), None);
    }

    #[test]
    fn late_timeout_handles_everything_and_moves_deadline_forward() {
        let mut ty = typing();
        ty.start_typing(t(0), 3);
        ty.start_typing(t(100), 1);
        ty.start_typing(t(20_000), 2);
        ty.remote_start(t(0), 9, "a");
        ty.remote_start(t(500), 4, "b");
        ty.remote_start(t(1000), 4, "c");
        ty.remote_start(t(19_000), 4, "d");
        let now = t(15_000);
        let out = ty.on_timeout(now);
        assert_eq!(
            out.sends,
            vec![
                LocalSend::Stop { project_id: 1 },
                LocalSend::Stop { project_id: 3 }
            ]
        );
        assert_eq!(out.changes, vec![change(4, &["d"]), change(9, &[])]);
        assert!(ty.next_deadline().is_some_and(|d| d > now));
        assert_eq!(ty.next_deadline(), Some(t(25_000)));
        assert_eq!(ty.on_timeout(now), TypingTimeout::default());
    }

    #[test]
    fn zero_durations_and_saturation_do_not_loop() {
        let mut ty = Typing::new(TypingConfig {
            throttle_ms: 0,
            idle_ms: 0,
            expire_ms: 0,
        });
        assert_eq!(ty.start_typing(t(5), 1), start(1));
        assert_eq!(ty.start_typing(t(5), 1), start(1));
        ty.remote_start(t(5), 1, "a");
        let out = ty.on_timeout(t(5));
        assert_eq!(out.sends.len(), 1);
        assert_eq!(out.changes, vec![change(1, &[])]);
        assert_eq!(ty.next_deadline(), None);

        let mut ty = Typing::new(TypingConfig {
            throttle_ms: u64::MAX,
            idle_ms: u64::MAX,
            expire_ms: u64::MAX,
        });
        let far = t(u64::MAX - 1);
        assert_eq!(ty.start_typing(far, 1), start(1));
        assert_eq!(ty.start_typing(far, 1), None);
        ty.remote_start(far, 1, "a");
        assert_eq!(ty.next_deadline(), Some(t(u64::MAX)));
        let out = ty.on_timeout(t(u64::MAX));
        assert_eq!((out.sends.len(), out.changes.len()), (1, 1));
        assert_eq!(ty.next_deadline(), None);
    }

    #[test]
    fn clear_remote_reports_each_project_emptied() {
        let mut ty = typing();
        ty.remote_start(t(0), 8, "a");
        ty.remote_start(t(0), 3, "b");
        ty.remote_start(t(0), 3, "c");
        ty.remote_start(t(0), 1, "d");
        ty.remote_stop(1, "d");
        assert_eq!(ty.clear_remote(), vec![change(3, &[]), change(8, &[])]);
        assert_eq!(ty.users(3), Vec::<String>::new());
        assert_eq!(ty.next_deadline(), None);
        assert_eq!(ty.clear_remote(), vec![]);
        assert_eq!(ty.remote_start(t(1), 3, "b"), Some(change(3, &["b"])));
    }

    #[test]
    fn remote_bounds() {
        let mut ty = typing();
        let long = "x".repeat(MAX_USER_ID_BYTES + 1);
        assert_eq!(ty.remote_start(t(0), 1, &long), None);
        assert_eq!(ty.users(1), Vec::<String>::new());
        let max = "y".repeat(MAX_USER_ID_BYTES);
        assert!(ty.remote_start(t(0), 1, &max).is_some());
        for i in 1..MAX_REMOTE_ENTRIES {
            assert!(ty
                .remote_start(t(0), (i % 7) as u64, &format!("u{i}"))
                .is_some());
        }
        assert_eq!(ty.remote_start(t(0), 1, "newcomer"), None);
        assert!(!ty.users(1).contains(&"newcomer".to_string()));
        // Refreshing someone already present still works when full.
        assert_eq!(ty.remote_start(t(1000), 1, &max), None);
        assert_eq!(ty.next_deadline(), Some(t(6000)));
        ty.on_timeout(t(6000));
        assert_eq!(ty.users(1), vec![max.clone()]);
        assert_eq!(
            ty.remote_start(t(6000), 1, "newcomer"),
            Some(change(1, &["newcomer", &max]))
        );
    }
}
