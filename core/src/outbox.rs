//! The outbox: messages waiting for an open connection, and at-least-once messages awaiting acks.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::config::{OutboxConfig, Overflow};
use crate::error::SessionError;
use crate::event::DropReason;
use crate::timer::{Deadline, TimerKind, Timestamp};
use crate::wire;

/// How hard the session tries to deliver a message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Delivery {
    /// Sent only if the connection is open right now; never queued across a disconnect.
    Volatile,
    /// Queued while offline, sent once (the default).
    #[default]
    AtMostOnce,
    /// Held until the server acks its id; resent with the same id after every reconnect.
    AtLeastOnce,
}

/// Which lane a held frame waits in: session frames (re-joins, resumes) go before application messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Lane {
    /// Frames the session derives from its own state; regenerated after each welcome, exempt from limits.
    Session,
    /// Application messages, bounded by the outbox limits.
    App,
}

type Key = (Lane, u64);

/// One encoded message the outbox holds; sent (and resent) verbatim.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Held {
    pub(crate) id: String,
    pub(crate) msg_type: String,
    pub(crate) text: String,
    pub(crate) delivery: Delivery,
    pub(crate) expires_at: Option<Timestamp>,
    pub(crate) coalesce: Option<String>,
    /// Transmitted at least once before (a later transmission is a resend).
    pub(crate) sent: bool,
}

#[derive(Clone, Debug)]
struct InFlight {
    held: Held,
    ack_due: Option<Timestamp>,
}

/// Queued and unacknowledged messages, bounded by count and bytes.
#[derive(Clone, Debug)]
pub(crate) struct Outbox {
    cfg: OutboxConfig,
    queue: BTreeMap<Key, Held>,
    inflight: BTreeMap<Key, InFlight>,
    ids: BTreeMap<String, Key>,
    coalesced: BTreeMap<String, Key>,
    expiry: BTreeSet<(Timestamp, Key)>,
    ack_due: BTreeSet<(Timestamp, Key)>,
    app_count: usize,
    app_bytes: usize,
    next_seq: u64,
}

impl Outbox {
    pub(crate) fn new(cfg: OutboxConfig) -> Self {
        Outbox {
            cfg,
            queue: BTreeMap::new(),
            inflight: BTreeMap::new(),
            ids: BTreeMap::new(),
            coalesced: BTreeMap::new(),
            expiry: BTreeSet::new(),
            ack_due: BTreeSet::new(),
            app_count: 0,
            app_bytes: 0,
            next_seq: 0,
        }
    }

    /// Application messages held (queued plus awaiting ack).
    pub(crate) fn len(&self) -> usize {
        self.app_count
    }

    /// Bytes of application messages held.
    pub(crate) fn bytes(&self) -> usize {
        self.app_bytes
    }

    /// Whether anything waits to be transmitted.
    pub(crate) fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Whether a message with this id is held.
    pub(crate) fn holds(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    /// Whether one more message fits beside `count` others, `bytes` counting all of them.
    fn fits(&self, count: usize, bytes: usize) -> bool {
        count < self.cfg.max_messages && bytes <= self.cfg.max_bytes
    }

    /// Queues an application message, applying coalescing and the overflow policy; returns
    /// what had to be dropped to make room (or the new message itself under `drop_newest`).
    pub(crate) fn push(&mut self, held: Held) -> Result<Vec<(Held, DropReason)>, SessionError> {
        let size = held.text.len();
        if size > self.cfg.max_bytes {
            return Err(SessionError::TooLarge {
                bytes: size,
                max: self.cfg.max_bytes,
            });
        }
        if self.ids.contains_key(&held.id) {
            return Err(SessionError::DuplicateId(held.id));
        }
        let replaced = held
            .coalesce
            .as_ref()
            .and_then(|c| self.coalesced.get(c).copied());
        let replaced_bytes = replaced
            .and_then(|k| self.queue.get(&k))
            .map_or(0, |h| h.text.len());
        let count = self.app_count - usize::from(replaced.is_some());
        let bytes = self.app_bytes - replaced_bytes;
        let mut dropped = Vec::new();
        if !self.fits(count, bytes + size) {
            match self.cfg.overflow {
                Overflow::Reject => {
                    return Err(SessionError::QueueFull {
                        messages: self.app_count,
                        bytes: self.app_bytes,
                    })
                }
                Overflow::DropNewest => return Ok(vec![(held, DropReason::QueueFull)]),
                Overflow::DropOldest => {}
            }
        }
        if let Some(k) = replaced {
            if let Some(old) = self.remove(k) {
                dropped.push((old, DropReason::Coalesced));
            }
        }
        while !self.fits(self.app_count, self.app_bytes + size) {
            match self.oldest_app() {
                Some(k) => {
                    if let Some(old) = self.remove(k) {
                        dropped.push((old, DropReason::QueueFull));
                    }
                }
                None => break,
            }
        }
        self.insert_queued(Lane::App, held);
        Ok(dropped)
    }

    /// Queues a session frame (re-join, resume) ahead of application messages.
    pub(crate) fn push_session(&mut self, held: Held) {
        self.insert_queued(Lane::Session, held);
    }

    fn insert_queued(&mut self, lane: Lane, held: Held) {
        self.next_seq += 1;
        let key = (lane, self.next_seq);
        self.index(key, &held);
        self.queue.insert(key, held);
    }

    fn index(&mut self, key: Key, held: &Held) {
        if key.0 == Lane::App {
            self.app_count += 1;
            self.app_bytes += held.text.len();
            self.ids.insert(held.id.clone(), key);
        }
        if let Some(c) = &held.coalesce {
            self.coalesced.insert(c.clone(), key);
        }
        if let Some(at) = held.expires_at {
            self.expiry.insert((at, key));
        }
    }

    fn oldest_app(&self) -> Option<Key> {
        let start = (Lane::App, 0);
        let q = self.queue.range(start..).next().map(|(k, _)| *k);
        let f = self.inflight.range(start..).next().map(|(k, _)| *k);
        match (q, f) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn remove(&mut self, key: Key) -> Option<Held> {
        let held = match self.queue.remove(&key) {
            Some(h) => h,
            None => {
                let f = self.inflight.remove(&key)?;
                if let Some(due) = f.ack_due {
                    self.ack_due.remove(&(due, key));
                }
                f.held
            }
        };
        if key.0 == Lane::App {
            self.app_count -= 1;
            self.app_bytes -= held.text.len();
            self.ids.remove(&held.id);
        }
        if let Some(c) = &held.coalesce {
            if self.coalesced.get(c) == Some(&key) {
                self.coalesced.remove(c);
            }
        }
        if let Some(at) = held.expires_at {
            self.expiry.remove(&(at, key));
        }
        Some(held)
    }

    /// Takes the next frame to transmit, in lane then FIFO order.
    pub(crate) fn pop_front(&mut self) -> Option<(Key, Held)> {
        let key = *self.queue.keys().next()?;
        let mut held = self.queue.remove(&key)?;
        // Coalescing only applies while queued; expiry and the id index follow it in flight.
        if let Some(c) = held.coalesce.take() {
            if self.coalesced.get(&c) == Some(&key) {
                self.coalesced.remove(&c);
            }
        }
        if key.0 == Lane::App && held.delivery != Delivery::AtLeastOnce {
            self.app_count -= 1;
            self.app_bytes -= held.text.len();
            self.ids.remove(&held.id);
            if let Some(at) = held.expires_at {
                self.expiry.remove(&(at, key));
            }
        }
        Some((key, held))
    }

    /// Keeps a transmitted at-least-once message until its ack, expecting it by `ack_due`.
    pub(crate) fn hold_for_ack(&mut self, key: Key, mut held: Held, ack_due: Timestamp) {
        held.sent = true;
        self.ack_due.insert((ack_due, key));
        self.inflight.insert(
            key,
            InFlight {
                held,
                ack_due: Some(ack_due),
            },
        );
    }

    /// The server acknowledged `id`; returns the message if it was held.
    pub(crate) fn ack(&mut self, id: &str) -> Option<Held> {
        let key = *self.ids.get(id)?;
        // Only at-least-once messages wait for acks; a stray ack must not remove anything else.
        let alo = |h: &Held| h.delivery == Delivery::AtLeastOnce;
        let waits = self.inflight.get(&key).is_some_and(|f| alo(&f.held))
            || self.queue.get(&key).is_some_and(alo);
        if waits {
            self.remove(key)
        } else {
            None
        }
    }

    /// The server refused `id`: whatever its delivery class, it is removed and returned.
    pub(crate) fn reject(&mut self, id: &str) -> Option<Held> {
        let key = *self.ids.get(id)?;
        self.remove(key)
    }

    /// Moves every unacknowledged message back to the front of the queue for resending.
    pub(crate) fn requeue_inflight(&mut self) {
        let inflight = std::mem::take(&mut self.inflight);
        self.ack_due.clear();
        for (key, f) in inflight {
            self.queue.insert(key, f.held);
        }
    }

    /// Drops what must not survive a lost connection: volatile messages (returned) and session frames.
    pub(crate) fn on_disconnect(&mut self) -> Vec<Held> {
        let keys: Vec<Key> = self
            .queue
            .iter()
            .filter(|(k, h)| k.0 == Lane::Session || h.delivery == Delivery::Volatile)
            .map(|(k, _)| *k)
            .collect();
        let mut dropped = Vec::new();
        for k in keys {
            if let Some(h) = self.remove(k) {
                if k.0 == Lane::App {
                    dropped.push(h);
                }
            }
        }
        // Acks are only expected on the connection that carried the message.
        for f in self.inflight.values_mut() {
            f.ack_due = None;
        }
        self.ack_due.clear();
        dropped
    }

    /// Removes and returns every message whose time to live has passed.
    pub(crate) fn expire(&mut self, now: Timestamp) -> Vec<Held> {
        let mut out = Vec::new();
        while let Some(&(at, key)) = self.expiry.first() {
            if at > now {
                break;
            }
            self.expiry.pop_first();
            if let Some(h) = self.remove(key) {
                out.push(h);
            }
        }
        out
    }

    /// Ids of in-flight messages whose ack is overdue at `now` (each reported once per transmission).
    pub(crate) fn ack_timeouts(&mut self, now: Timestamp) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(&(at, key)) = self.ack_due.first() {
            if at > now {
                break;
            }
            self.ack_due.pop_first();
            if let Some(f) = self.inflight.get_mut(&key) {
                f.ack_due = None;
                out.push(f.held.id.clone());
            }
        }
        out
    }

    /// The earliest expiry or ack deadline.
    pub(crate) fn next_deadline(&self) -> Option<Deadline> {
        let exp = self.expiry.first().map(|&(at, _)| Deadline {
            at,
            timer: TimerKind::OutboxExpiry,
        });
        let ack = self.ack_due.first().map(|&(at, _)| Deadline {
            at,
            timer: TimerKind::AckTimeout,
        });
        Deadline::earliest(exp, ack)
    }
}

/// Outbox contents that survive a page reload or process restart: `snapshot_outbox`'s JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSnapshot {
    /// Format version (1).
    pub version: u32,
    /// Held messages, oldest first: awaiting ack, then queued.
    pub messages: Vec<SnapshotMessage>,
}

/// One held message in a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotMessage {
    /// Message id (kept, so server-side dedupe still works).
    pub id: String,
    /// Message type.
    #[serde(rename = "type")]
    pub msg_type: String,
    /// Delivery class (never `volatile`).
    pub delivery: Delivery,
    /// The encoded frame, resent verbatim.
    pub frame: String,
    /// Coalescing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coalesce: Option<String>,
    /// Time left to live when the snapshot was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_ms: Option<u64>,
    /// Whether it was transmitted before (a later transmission counts as a resend).
    #[serde(default)]
    pub sent: bool,
}

/// Snapshot format version written and accepted.
pub(crate) const SNAPSHOT_VERSION: u32 = 1;

impl Outbox {
    /// Every held application message that should outlive the process, oldest first.
    pub(crate) fn snapshot(&self, now: Timestamp) -> OutboxSnapshot {
        let inflight = self.inflight.iter().map(|(k, f)| (k, &f.held));
        let mut all: Vec<(&Key, &Held)> = inflight
            .chain(self.queue.iter())
            .filter(|(k, h)| k.0 == Lane::App && h.delivery != Delivery::Volatile)
            .collect();
        all.sort_by_key(|(k, _)| **k);
        OutboxSnapshot {
            version: SNAPSHOT_VERSION,
            messages: all
                .into_iter()
                .map(|(_, h)| SnapshotMessage {
                    id: h.id.clone(),
                    msg_type: h.msg_type.clone(),
                    delivery: h.delivery,
                    frame: h.text.clone(),
                    coalesce: h.coalesce.clone(),
                    expires_in_ms: h.expires_at.map(|e| e.ms_since(now)),
                    sent: h.sent,
                })
                .collect(),
        }
    }

    /// Puts a snapshot's messages back in the queue, all or nothing; returns how many.
    pub(crate) fn restore(
        &mut self,
        snap: OutboxSnapshot,
        now: Timestamp,
        max_frame_bytes: usize,
    ) -> Result<usize, String> {
        if snap.version != SNAPSHOT_VERSION {
            return Err(format!(
                "version {} is not supported (expected {SNAPSHOT_VERSION})",
                snap.version
            ));
        }
        let count = self.app_count + snap.messages.len();
        let bytes = self.app_bytes + snap.messages.iter().map(|m| m.frame.len()).sum::<usize>();
        if count > self.cfg.max_messages || bytes > self.cfg.max_bytes {
            return Err(format!(
                "it would hold {count} messages / {bytes} bytes; the outbox allows {} / {}",
                self.cfg.max_messages, self.cfg.max_bytes
            ));
        }
        let mut ids = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for (i, m) in snap.messages.iter().enumerate() {
            let bad = |why: String| format!("message {i}: {why}");
            if m.id.is_empty() || m.id.len() > crate::config::MAX_ID_BYTES {
                return Err(bad("id must be 1-128 bytes".into()));
            }
            if self.ids.contains_key(&m.id) || !ids.insert(m.id.as_str()) {
                return Err(bad(format!("id {:?} is already held", m.id)));
            }
            if let Some(c) = &m.coalesce {
                if c.is_empty() || c.len() > crate::config::MAX_ID_BYTES {
                    return Err(bad("coalesce must be 1-128 bytes".into()));
                }
                if self.coalesced.contains_key(c) || !keys.insert(c.as_str()) {
                    return Err(bad(format!("coalesce key {c:?} is already held")));
                }
            }
            if m.delivery == Delivery::Volatile {
                return Err(bad("volatile messages are never persisted".into()));
            }
            if wire::CONTROL_TYPES.contains(&m.msg_type.as_str()) {
                return Err(bad(format!("type {:?} is reserved", m.msg_type)));
            }
            let env =
                wire::decode(&m.frame, max_frame_bytes, 128).map_err(|e| bad(e.to_string()))?;
            if env.msg_type != m.msg_type || env.id.as_deref() != Some(m.id.as_str()) {
                return Err(bad("frame does not carry the message's type and id".into()));
            }
        }
        let n = snap.messages.len();
        for m in snap.messages {
            self.insert_queued(
                Lane::App,
                Held {
                    id: m.id,
                    msg_type: m.msg_type,
                    text: m.frame,
                    delivery: m.delivery,
                    expires_at: m.expires_in_ms.map(|ms| now.add_ms(ms)),
                    coalesce: m.coalesce,
                    sent: m.sent,
                },
            );
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(id: &str, bytes: usize) -> Held {
        Held {
            id: id.into(),
            msg_type: "t".into(),
            text: "x".repeat(bytes),
            delivery: Delivery::AtMostOnce,
            expires_at: None,
            coalesce: None,
            sent: false,
        }
    }

    fn outbox(max_messages: usize, max_bytes: usize, overflow: Overflow) -> Outbox {
        Outbox::new(OutboxConfig {
            max_messages,
            max_bytes,
            overflow,
            ack_timeout_ms: 1000,
        })
    }

    fn ids(dropped: &[(Held, DropReason)]) -> Vec<(&str, DropReason)> {
        dropped.iter().map(|(h, r)| (h.id.as_str(), *r)).collect()
    }

    #[test]
    fn drop_oldest_by_count_and_bytes() {
        let mut o = outbox(2, 100, Overflow::DropOldest);
        assert!(o.push(held("a", 10)).unwrap().is_empty());
        assert!(o.push(held("b", 10)).unwrap().is_empty());
        assert_eq!(
            ids(&o.push(held("c", 10)).unwrap()),
            vec![("a", DropReason::QueueFull)]
        );
        assert_eq!(
            ids(&o.push(held("d", 95)).unwrap()),
            vec![("b", DropReason::QueueFull), ("c", DropReason::QueueFull)]
        );
        assert_eq!((o.len(), o.bytes()), (1, 95));
    }

    #[test]
    fn drop_newest_and_reject() {
        let mut o = outbox(1, 100, Overflow::DropNewest);
        o.push(held("a", 10)).unwrap();
        assert_eq!(
            ids(&o.push(held("b", 10)).unwrap()),
            vec![("b", DropReason::QueueFull)]
        );
        assert_eq!(o.pop_front().unwrap().1.id, "a");
        let mut o = outbox(1, 100, Overflow::Reject);
        o.push(held("a", 10)).unwrap();
        assert_eq!(
            o.push(held("b", 10)),
            Err(SessionError::QueueFull {
                messages: 1,
                bytes: 10
            })
        );
        assert_eq!(
            o.push(held("c", 101)),
            Err(SessionError::TooLarge {
                bytes: 101,
                max: 100
            })
        );
    }

    #[test]
    fn coalescing_replaces_and_moves_to_back() {
        let mut o = outbox(2, 100, Overflow::Reject);
        let mut a = held("a", 5);
        a.coalesce = Some("cursor".into());
        o.push(a).unwrap();
        o.push(held("b", 5)).unwrap();
        let mut c = held("c", 5);
        c.coalesce = Some("cursor".into());
        // Replacing frees a slot, so even `reject` accepts it.
        assert_eq!(ids(&o.push(c).unwrap()), vec![("a", DropReason::Coalesced)]);
        assert_eq!(o.pop_front().unwrap().1.id, "b");
        assert_eq!(o.pop_front().unwrap().1.id, "c");
        assert_eq!(o.len(), 0);
    }

    #[test]
    fn ttl_expiry_and_deadline() {
        let mut o = outbox(10, 100, Overflow::Reject);
        let mut a = held("a", 1);
        a.expires_at = Some(Timestamp::from_millis(50));
        o.push(a).unwrap();
        o.push(held("b", 1)).unwrap();
        assert_eq!(o.next_deadline().unwrap().at.as_millis(), 50);
        assert!(o.expire(Timestamp::from_millis(49)).is_empty());
        assert_eq!(o.expire(Timestamp::from_millis(50))[0].id, "a");
        assert_eq!(o.next_deadline(), None);
        assert_eq!(o.len(), 1);
    }

    #[test]
    fn at_least_once_held_until_ack_and_requeued_in_order() {
        let mut o = outbox(10, 100, Overflow::Reject);
        for id in ["a", "b"] {
            let mut h = held(id, 1);
            h.delivery = Delivery::AtLeastOnce;
            o.push(h).unwrap();
        }
        o.push(held("c", 1)).unwrap();
        for _ in 0..2 {
            let (k, h) = o.pop_front().unwrap();
            o.hold_for_ack(k, h, Timestamp::from_millis(10));
        }
        assert_eq!(o.len(), 3);
        assert_eq!(o.ack_timeouts(Timestamp::from_millis(10)), vec!["a", "b"]);
        assert!(o.ack_timeouts(Timestamp::from_millis(20)).is_empty());
        assert_eq!(o.ack("a").unwrap().id, "a");
        assert!(o.ack("a").is_none());
        o.requeue_inflight();
        let (_, b) = o.pop_front().unwrap();
        assert_eq!((b.id.as_str(), b.sent), ("b", true));
        assert_eq!(o.pop_front().unwrap().1.id, "c");
    }

    #[test]
    fn session_lane_goes_first_and_is_not_counted() {
        let mut o = outbox(2, 100, Overflow::Reject);
        o.push(held("app", 1)).unwrap();
        o.push_session(held("rejoin", 1));
        assert_eq!(o.len(), 1);
        assert_eq!(o.pop_front().unwrap().1.id, "rejoin");
        o.push_session(held("resume", 1));
        let mut v = held("v", 1);
        v.delivery = Delivery::Volatile;
        o.push(v).unwrap();
        assert_eq!(
            o.on_disconnect()
                .iter()
                .map(|h| h.id.as_str())
                .collect::<Vec<_>>(),
            vec!["v"]
        );
        assert_eq!(o.pop_front().unwrap().1.id, "app");
        assert!(!o.has_queued());
    }

    fn framed(id: &str) -> Held {
        Held {
            text: format!(r#"{{"type":"t","data":null,"id":"{id}"}}"#),
            ..held(id, 0)
        }
    }

    #[test]
    fn snapshot_restore_snapshot_is_identical() {
        let now = Timestamp::from_millis(1_000);
        let mut o = outbox(10, 1000, Overflow::Reject);
        let mut a = framed("a");
        a.delivery = Delivery::AtLeastOnce;
        o.push(a).unwrap();
        let (k, a) = o.pop_front().unwrap();
        o.hold_for_ack(k, a, now);
        let mut b = framed("b");
        b.expires_at = Some(Timestamp::from_millis(5_000));
        b.coalesce = Some("cur".into());
        o.push(b).unwrap();
        let snap = o.snapshot(now);
        assert_eq!(snap.messages.len(), 2);
        assert!(snap.messages[0].sent);
        assert_eq!(snap.messages[1].expires_in_ms, Some(4_000));
        let mut fresh = outbox(10, 1000, Overflow::Reject);
        assert_eq!(fresh.restore(snap.clone(), now, 1 << 20), Ok(2));
        assert_eq!(fresh.snapshot(now), snap);
        assert_eq!(fresh.pop_front().unwrap().1.id, "a");
    }

    #[test]
    fn restore_rejects_bad_snapshots_atomically() {
        let now = Timestamp::ZERO;
        let good = SnapshotMessage {
            id: "a".into(),
            msg_type: "t".into(),
            delivery: Delivery::AtMostOnce,
            frame: framed("a").text,
            coalesce: None,
            expires_in_ms: None,
            sent: false,
        };
        let cases: Vec<(Vec<SnapshotMessage>, &str)> = vec![
            (vec![good.clone(), good.clone()], "already held"),
            (
                vec![SnapshotMessage {
                    frame: "{".into(),
                    ..good.clone()
                }],
                "invalid envelope",
            ),
            (
                vec![SnapshotMessage {
                    id: "zz".into(),
                    ..good.clone()
                }],
                "type and id",
            ),
            (
                vec![SnapshotMessage {
                    delivery: Delivery::Volatile,
                    ..good.clone()
                }],
                "volatile",
            ),
            (vec![good.clone(); 3], "allows"),
        ];
        for (messages, want) in cases {
            let mut o = outbox(2, 1000, Overflow::Reject);
            let err = o
                .restore(
                    OutboxSnapshot {
                        version: 1,
                        messages,
                    },
                    now,
                    1 << 20,
                )
                .unwrap_err();
            assert!(err.contains(want), "{err} lacks {want}");
            assert_eq!(o.len(), 0, "nothing restored on error");
        }
        let mut o = outbox(2, 1000, Overflow::Reject);
        assert!(o
            .restore(
                OutboxSnapshot {
                    version: 2,
                    messages: vec![]
                },
                now,
                1 << 20
            )
            .is_err());
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let mut o = outbox(10, 100, Overflow::Reject);
        o.push(held("a", 1)).unwrap();
        assert_eq!(
            o.push(held("a", 1)),
            Err(SessionError::DuplicateId("a".into()))
        );
    }
}
