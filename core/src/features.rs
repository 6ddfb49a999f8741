//! The session's feature modules together, walked in one fixed order, so the order of outputs
//! is written down once, here.

use crate::auth::Auth;
use crate::backpressure::Backpressure;
use crate::feature::{Effects, Feature, Verdict};
use crate::presence::Presence;
use crate::project::Projects;
use crate::stream::Streams;
use crate::timer::{Deadline, TimerKind, Timestamp};
use crate::typing::Typing;
use crate::wire::Envelope;

/// The session's feature modules.
#[derive(Debug)]
pub(crate) struct Features {
    /// Whether the transport is blocked.
    pub(crate) backpressure: Backpressure,
    /// Typing indicators.
    pub(crate) typing: Typing,
    /// Joined projects and their versions.
    pub(crate) projects: Projects,
    /// Agent streams.
    pub(crate) streams: Streams,
    /// Presence per joined project.
    pub(crate) presence: Presence,
    /// The token and its refresh deadline.
    pub(crate) auth: Auth,
}

impl Features {
    /// Every feature, in the order their outputs go out: after a welcome project re-joins come
    /// before stream resumes; on link down the backpressure release comes first, then typing
    /// clears, then presence clears.
    fn each_mut(&mut self) -> [&mut dyn Feature; 6] {
        [
            &mut self.backpressure,
            &mut self.typing,
            &mut self.projects,
            &mut self.streams,
            &mut self.presence,
            &mut self.auth,
        ]
    }

    /// The earliest feature deadline (ties go to the earlier `TimerKind`, as for every timer).
    pub(crate) fn next_deadline(&self) -> Option<Deadline> {
        // Asked several times per input: each feature called directly rather than through
        // `each()`'s trait objects; the same earliest deadline.
        fn deadline(f: &impl Feature) -> Option<Deadline> {
            Some(Deadline {
                at: f.due_at()?,
                timer: f.timer()?,
            })
        }
        [
            deadline(&self.backpressure),
            deadline(&self.typing),
            deadline(&self.projects),
            deadline(&self.streams),
            deadline(&self.presence),
            deadline(&self.auth),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Fires `timer` in the feature that owns it.
    pub(crate) fn on_timer(&mut self, now: Timestamp, timer: TimerKind) -> Effects {
        let mut fx = Effects::new();
        for f in self.each_mut() {
            if f.timer() == Some(timer) {
                f.on_timer(now, &mut fx);
            }
        }
        fx
    }

    /// Shows an inbound application message to every feature; withheld if any withholds it.
    pub(crate) fn on_message(&mut self, now: Timestamp, env: &Envelope) -> (Verdict, Effects) {
        let mut fx = Effects::new();
        let mut verdict = Verdict::Deliver;
        for f in self.each_mut() {
            if f.on_message(now, env, &mut fx) == Verdict::Withhold {
                verdict = Verdict::Withhold;
            }
        }
        (verdict, fx)
    }

    /// Tells every feature the transport went away.
    pub(crate) fn on_link_down(&mut self) -> Effects {
        let mut fx = Effects::new();
        for f in self.each_mut() {
            f.on_link_down(&mut fx);
        }
        fx
    }

    /// Tells every feature a welcome arrived.
    pub(crate) fn on_welcome(&mut self, now: Timestamp) -> Effects {
        let mut fx = Effects::new();
        for f in self.each_mut() {
            f.on_welcome(now, &mut fx);
        }
        fx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{StreamsConfig, TypingConfig};
    use crate::event::Event;
    use crate::feature::Effect;
    use crate::wire;

    fn features(stall_ms: u64) -> Features {
        Features {
            backpressure: Backpressure::new(100, 50),
            typing: Typing::new(TypingConfig::default()).with_user(Some("ann".into())),
            projects: Projects::new(8, 1000),
            streams: Streams::new(StreamsConfig {
                stall_ms,
                ..StreamsConfig::default()
            }),
            presence: Presence::new(8),
            auth: Auth::new(None, 0),
        }
    }

    fn env(text: &str) -> Envelope {
        wire::decode(text, 1 << 20, 64).unwrap()
    }

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn welcome_rejoins_projects_before_resuming_streams() {
        let mut f = features(30_000);
        f.streams.on_start(t(0), "r1");
        f.projects.join(2).unwrap();
        let kinds: Vec<&str> = f
            .on_welcome(Timestamp::ZERO)
            .iter()
            .map(|e| match e {
                Effect::Queue(frame) => frame.msg_type,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(kinds, ["project_subscribe", "agent_stream_resume"]);
    }

    #[test]
    fn link_down_clears_typing_before_presence() {
        let mut f = features(30_000);
        let (_, fx) = f.on_message(
            t(0),
            &env(r#"{"type":"presence_state","projectId":1,"data":{"members":["bob"]}}"#),
        );
        assert_eq!(fx.len(), 1);
        let (_, fx) = f.on_message(
            t(0),
            &env(r#"{"type":"user_typing_start","projectId":1,"data":{"userId":"bob"}}"#),
        );
        assert_eq!(fx.len(), 1);
        assert_eq!(
            f.on_link_down(),
            vec![
                Effect::Emit(Event::Typing {
                    project_id: 1,
                    users: vec![]
                }),
                Effect::Emit(Event::Presence {
                    project_id: 1,
                    members: vec![]
                }),
            ]
        );
    }

    #[test]
    fn equal_deadlines_go_to_the_earlier_timer_kind() {
        let mut f = features(6_000);
        f.streams.on_start(t(0), "r1");
        f.on_message(
            t(0),
            &env(r#"{"type":"user_typing_start","projectId":1,"data":{"userId":"bob"}}"#),
        );
        // Both fall due at 6000 (typing expiry and stream stall): typing is the earlier kind.
        assert_eq!(
            f.next_deadline(),
            Some(Deadline {
                at: t(6_000),
                timer: TimerKind::Typing
            })
        );
        let fx = f.on_timer(t(6_000), TimerKind::Typing);
        assert_eq!(fx.len(), 1);
        assert_eq!(
            f.next_deadline().map(|d| d.timer),
            Some(TimerKind::StreamStall)
        );
    }

    #[test]
    fn duplicate_chunks_are_withheld_and_own_echoes_ignored() {
        let mut f = features(30_000);
        let chunk =
            env(r#"{"type":"agent_stream_chunk","data":{"streamId":"r1","seq":0,"delta":"a"}}"#);
        assert_eq!(f.on_message(t(0), &chunk).0, Verdict::Deliver);
        let (verdict, fx) = f.on_message(t(1), &chunk);
        assert_eq!(verdict, Verdict::Withhold);
        assert_eq!(fx, vec![Effect::Duplicate]);
        let echo = env(r#"{"type":"user_typing_start","projectId":1,"data":{"userId":"ann"}}"#);
        assert_eq!(f.on_message(t(2), &echo), (Verdict::Deliver, vec![]));
    }
}
