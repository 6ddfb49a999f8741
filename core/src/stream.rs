//! Assembly of resumable AI-agent response streams from out-of-order, possibly duplicated chunks.

use std::collections::{BTreeMap, VecDeque};

use serde_json::json;

use crate::config::StreamsConfig;
use crate::event::{Event, StreamState};
use crate::feature::{Effect, Effects, Feature, SessionFrame, Verdict};
use crate::timer::{TimerKind, Timestamp};
use crate::wire::{self, Envelope};

/// Longest accepted stream id, in bytes.
const MAX_ID_BYTES: usize = 128;
/// Longest error text kept from an `agent_stream_error`, in bytes.
const MAX_ERROR_BYTES: usize = 256;

/// One change to a stream, for the lead to surface to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StreamEvent {
    /// The stream the event belongs to.
    pub(crate) stream_id: String,
    /// What happened.
    pub(crate) state: StreamState,
    /// The appended text, for `Delta` events only.
    pub(crate) delta: Option<String>,
    /// Total content bytes (UTF-8) assembled so far.
    pub(crate) len: usize,
    /// The failure reason, for `Failed` events only.
    pub(crate) error: Option<String>,
}

/// The result of feeding one chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChunkVerdict {
    /// Events the chunk caused, in order.
    pub(crate) events: Vec<StreamEvent>,
    /// Whether the chunk had already been received.
    pub(crate) duplicate: bool,
}

/// Why a stream could not be interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InterruptError {
    /// No such stream is known.
    Unknown,
    /// The stream already finished.
    Finished,
}

/// Stored lifecycle of a stream (the event states `Started`/`Delta` both mean `Streaming`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Streaming,
    Stalled,
    Done,
    Interrupted,
    Failed,
}

impl Phase {
    fn is_live(self) -> bool {
        matches!(self, Phase::Streaming | Phase::Stalled)
    }
}

#[derive(Clone, Debug)]
struct Stream {
    /// Creation order, for evicting the oldest finished stream.
    created: u64,
    phase: Phase,
    content: String,
    /// Seq of the next chunk to append.
    next_seq: u64,
    /// Out-of-order chunks waiting for their predecessors.
    pending: BTreeMap<u64, String>,
    /// Bytes held in `pending`, so buffering stays within `max_bytes` per stream.
    pending_bytes: usize,
    /// Chunk count announced by an end that arrived before all chunks.
    total: Option<u64>,
    /// When the stream stalls if no chunk arrives.
    deadline: Timestamp,
}

/// All agent streams of one session: assembly, stall detection, capacity and resume points.
#[derive(Clone, Debug)]
pub(crate) struct Streams {
    cfg: StreamsConfig,
    streams: BTreeMap<String, Stream>,
    /// Ids of evicted finished streams (at most `max_streams`), so late chunks cannot revive them.
    evicted: VecDeque<String>,
    next_created: u64,
}

impl Streams {
    /// An empty set of streams with the given limits.
    pub(crate) fn new(cfg: StreamsConfig) -> Self {
        Streams {
            cfg,
            streams: BTreeMap::new(),
            evicted: VecDeque::new(),
            next_created: 0,
        }
    }

    /// Handles `agent_stream_start`.
    pub(crate) fn on_start(&mut self, now: Timestamp, stream_id: &str) -> Vec<StreamEvent> {
        if !valid_id(stream_id)
            || self.streams.contains_key(stream_id)
            || self.was_evicted(stream_id)
        {
            return Vec::new();
        }
        let mut events = Vec::new();
        self.create(now, stream_id, &mut events);
        events
    }

    /// Handles `agent_stream_chunk`.
    pub(crate) fn on_chunk(
        &mut self,
        now: Timestamp,
        stream_id: &str,
        seq: u64,
        delta: &str,
    ) -> ChunkVerdict {
        let mut events = Vec::new();
        if !valid_id(stream_id) || self.was_evicted(stream_id) {
            return verdict(events, false);
        }
        if !self.streams.contains_key(stream_id) && !self.create(now, stream_id, &mut events) {
            return verdict(events, false);
        }
        let cfg = &self.cfg;
        let Some(s) = self.streams.get_mut(stream_id) else {
            return verdict(events, false);
        };
        match s.phase {
            Phase::Done => return verdict(events, true),
            Phase::Interrupted | Phase::Failed => return verdict(events, false),
            Phase::Streaming | Phase::Stalled => {}
        }
        // Any sign of life from the server ends a stall; the next Delta simply resumes.
        s.phase = Phase::Streaming;
        s.deadline = now.add_ms(cfg.stall_ms);

        if seq < s.next_seq || s.pending.contains_key(&seq) {
            return verdict(events, true);
        }
        if s.total.is_some_and(|t| seq >= t) {
            // Beyond the announced end: not part of the content.
            return verdict(events, false);
        }
        if seq > s.next_seq {
            let fits = s.pending.len() < cfg.max_pending
                && s.content
                    .len()
                    .saturating_add(s.pending_bytes)
                    .saturating_add(delta.len())
                    <= cfg.max_bytes;
            // A dropped chunk is re-sent when the client resumes from `next_seq`.
            if fits {
                s.pending.insert(seq, delta.to_owned());
                s.pending_bytes = s.pending_bytes.saturating_add(delta.len());
            }
            return verdict(events, false);
        }

        let mut text = delta.to_owned();
        loop {
            if s.content.len().saturating_add(text.len()) > cfg.max_bytes {
                fail(
                    s,
                    stream_id,
                    format!("stream exceeded max_bytes ({})", cfg.max_bytes),
                    &mut events,
                );
                return verdict(events, false);
            }
            s.content.push_str(&text);
            s.next_seq = s.next_seq.saturating_add(1);
            events.push(event(stream_id, StreamState::Delta, s, Some(text), None));
            match s.pending.remove(&s.next_seq) {
                Some(next) => {
                    s.pending_bytes = s.pending_bytes.saturating_sub(next.len());
                    text = next;
                }
                None => break,
            }
        }
        if s.total.is_some_and(|t| s.next_seq >= t) {
            finish(s, Phase::Done);
            events.push(event(stream_id, StreamState::Done, s, None, None));
        }
        verdict(events, false)
    }

    /// Handles `agent_stream_end`; `total` is the number of chunks the stream had.
    pub(crate) fn on_end(
        &mut self,
        _now: Timestamp,
        stream_id: &str,
        total: Option<u64>,
    ) -> Vec<StreamEvent> {
        let Some(s) = self.streams.get_mut(stream_id) else {
            return Vec::new();
        };
        if !s.phase.is_live() {
            return Vec::new();
        }
        match total {
            Some(t) if s.next_seq < t => {
                // Wait for the missing chunks; buffered chunks past the end are not content.
                s.total = Some(t);
                let beyond = s.pending.split_off(&t);
                let dropped: usize = beyond.values().map(String::len).sum();
                s.pending_bytes = s.pending_bytes.saturating_sub(dropped);
                Vec::new()
            }
            _ => {
                finish(s, Phase::Done);
                vec![event(stream_id, StreamState::Done, s, None, None)]
            }
        }
    }

    /// Handles `agent_stream_error`.
    pub(crate) fn on_error(
        &mut self,
        _now: Timestamp,
        stream_id: &str,
        error: &str,
    ) -> Vec<StreamEvent> {
        let Some(s) = self.streams.get_mut(stream_id) else {
            return Vec::new();
        };
        if !s.phase.is_live() {
            return Vec::new();
        }
        let mut events = Vec::new();
        fail(
            s,
            stream_id,
            truncate(error, MAX_ERROR_BYTES).to_owned(),
            &mut events,
        );
        events
    }

    /// Stops a live stream at the client's request; later chunks for it are ignored.
    pub(crate) fn interrupt(
        &mut self,
        stream_id: &str,
    ) -> Result<Vec<StreamEvent>, InterruptError> {
        let Some(s) = self.streams.get_mut(stream_id) else {
            return Err(InterruptError::Unknown);
        };
        if !s.phase.is_live() {
            return Err(InterruptError::Finished);
        }
        finish(s, Phase::Interrupted);
        Ok(vec![event(
            stream_id,
            StreamState::Interrupted,
            s,
            None,
            None,
        )])
    }

    /// `(stream_id, next expected seq)` of every unfinished stream, by ascending id.
    pub(crate) fn resumes(&self) -> Vec<(String, u64)> {
        self.streams
            .iter()
            .filter(|(_, s)| s.phase.is_live())
            .map(|(id, s)| (id.clone(), s.next_seq))
            .collect()
    }

    /// Marks every streaming stream whose stall deadline passed as stalled.
    pub(crate) fn on_timeout(&mut self, now: Timestamp) -> Vec<StreamEvent> {
        let mut events = Vec::new();
        for (id, s) in self.streams.iter_mut() {
            if s.phase == Phase::Streaming && s.deadline <= now {
                s.phase = Phase::Stalled;
                events.push(event(id, StreamState::Stalled, s, None, None));
            }
        }
        events
    }

    /// The earliest stall deadline among streams that are streaming (not already stalled).
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.streams
            .values()
            .filter(|s| s.phase == Phase::Streaming)
            .map(|s| s.deadline)
            .min()
    }

    /// The content assembled so far for a kept stream.
    pub(crate) fn content(&self, stream_id: &str) -> Option<&str> {
        self.streams.get(stream_id).map(|s| s.content.as_str())
    }

    /// The current state of a kept stream (`Started` until the first chunk is appended, then `Delta`).
    pub(crate) fn state(&self, stream_id: &str) -> Option<StreamState> {
        self.streams.get(stream_id).map(|s| match s.phase {
            Phase::Streaming if s.next_seq == 0 => StreamState::Started,
            Phase::Streaming => StreamState::Delta,
            Phase::Stalled => StreamState::Stalled,
            Phase::Done => StreamState::Done,
            Phase::Interrupted => StreamState::Interrupted,
            Phase::Failed => StreamState::Failed,
        })
    }

    #[cfg(test)]
    /// Whether the stream is kept and still streaming or stalled.
    pub(crate) fn is_live(&self, stream_id: &str) -> bool {
        self.streams
            .get(stream_id)
            .is_some_and(|s| s.phase.is_live())
    }

    /// Creates a stream (making room if needed) and emits Started, or emits Failed when every
    /// kept stream is live; returns whether the stream now exists.
    fn create(&mut self, now: Timestamp, stream_id: &str, events: &mut Vec<StreamEvent>) -> bool {
        if self.streams.len() >= self.cfg.max_streams && !self.evict_oldest_finished() {
            events.push(StreamEvent {
                stream_id: stream_id.to_owned(),
                state: StreamState::Failed,
                delta: None,
                len: 0,
                error: Some(format!("too many live streams ({})", self.cfg.max_streams)),
            });
            return false;
        }
        let s = Stream {
            created: self.next_created,
            phase: Phase::Streaming,
            content: String::new(),
            next_seq: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            total: None,
            deadline: now.add_ms(self.cfg.stall_ms),
        };
        self.next_created = self.next_created.saturating_add(1);
        events.push(event(stream_id, StreamState::Started, &s, None, None));
        self.streams.insert(stream_id.to_owned(), s);
        true
    }

    /// Drops the oldest-created finished stream, remembering its id; false if none is finished.
    fn evict_oldest_finished(&mut self) -> bool {
        let oldest = self
            .streams
            .iter()
            .filter(|(_, s)| !s.phase.is_live())
            .min_by_key(|(_, s)| s.created)
            .map(|(id, _)| id.clone());
        let Some(id) = oldest else {
            return false;
        };
        self.streams.remove(&id);
        if self.evicted.len() >= self.cfg.max_streams {
            self.evicted.pop_front();
        }
        if self.cfg.max_streams > 0 {
            self.evicted.push_back(id);
        }
        true
    }

    fn was_evicted(&self, stream_id: &str) -> bool {
        self.evicted.iter().any(|id| id == stream_id)
    }
}

fn valid_id(stream_id: &str) -> bool {
    !stream_id.is_empty() && stream_id.len() <= MAX_ID_BYTES
}

fn verdict(events: Vec<StreamEvent>, duplicate: bool) -> ChunkVerdict {
    ChunkVerdict { events, duplicate }
}

fn event(
    stream_id: &str,
    state: StreamState,
    s: &Stream,
    delta: Option<String>,
    error: Option<String>,
) -> StreamEvent {
    StreamEvent {
        stream_id: stream_id.to_owned(),
        state,
        delta,
        len: s.content.len(),
        error,
    }
}

/// Moves a stream to a terminal phase and frees its buffers.
fn finish(s: &mut Stream, phase: Phase) {
    s.phase = phase;
    s.pending.clear();
    s.pending_bytes = 0;
    s.total = None;
}

fn fail(s: &mut Stream, stream_id: &str, error: String, events: &mut Vec<StreamEvent>) {
    finish(s, Phase::Failed);
    events.push(event(stream_id, StreamState::Failed, s, None, Some(error)));
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

impl From<StreamEvent> for Event {
    fn from(e: StreamEvent) -> Event {
        Event::Stream {
            stream_id: e.stream_id,
            state: e.state,
            delta: e.delta,
            len: e.len,
            error: e.error,
        }
    }
}

/// Turns stream events into effects that emit them.
fn emit_all(fx: &mut Effects, events: Vec<StreamEvent>) {
    fx.extend(events.into_iter().map(|e| Effect::Emit(e.into())));
}

impl Feature for Streams {
    fn timer(&self) -> Option<TimerKind> {
        Some(TimerKind::StreamStall)
    }

    fn due_at(&self) -> Option<Timestamp> {
        self.next_deadline()
    }

    /// Marks quiet streams as stalled.
    fn on_timer(&mut self, now: Timestamp, fx: &mut Effects) {
        emit_all(fx, self.on_timeout(now));
    }

    /// Assembles `agent_stream_*` messages; a duplicate chunk is withheld. A payload that does
    /// not parse is reported and the message still delivered.
    fn on_message(&mut self, now: Timestamp, env: &Envelope, fx: &mut Effects) -> Verdict {
        let events = match env.msg_type.as_str() {
            "agent_stream_start" => env
                .data_as::<wire::StreamRef>()
                .map(|d| self.on_start(now, &d.stream_id)),
            "agent_stream_chunk" => match env.data_as::<wire::StreamChunk>() {
                Ok(d) => {
                    let verdict = self.on_chunk(now, &d.stream_id, d.seq, &d.delta);
                    emit_all(fx, verdict.events);
                    if verdict.duplicate {
                        fx.push(Effect::Duplicate);
                        return Verdict::Withhold;
                    }
                    Ok(Vec::new())
                }
                Err(e) => Err(e),
            },
            "agent_stream_end" => env
                .data_as::<wire::StreamEnd>()
                .map(|d| self.on_end(now, &d.stream_id, d.seq)),
            "agent_stream_error" => env
                .data_as::<wire::StreamError>()
                .map(|d| self.on_error(now, &d.stream_id, &d.error)),
            _ => return Verdict::Deliver,
        };
        match events {
            Ok(events) => emit_all(fx, events),
            Err(e) => fx.push(Effect::ProtocolError(format!(
                "invalid {}: {e}",
                env.msg_type
            ))),
        }
        Verdict::Deliver
    }

    /// Asks the server to resume every unfinished stream from the chunk it still needs.
    fn on_welcome(&mut self, _now: Timestamp, fx: &mut Effects) {
        for (stream_id, from_seq) in self.resumes() {
            fx.push(Effect::Queue(SessionFrame {
                msg_type: "agent_stream_resume",
                data: json!(wire::StreamResume {
                    stream_id,
                    from_seq
                }),
                project_id: None,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_interrupted_and_failed_are_final() {
        use StreamState::*;
        let all = [Started, Delta, Done, Interrupted, Failed, Stalled];
        let finals: Vec<StreamState> = all.into_iter().filter(|s| s.is_final()).collect();
        assert_eq!(finals, [Done, Interrupted, Failed]);
    }

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn cfg() -> StreamsConfig {
        StreamsConfig {
            stall_ms: 100,
            ..StreamsConfig::default()
        }
    }

    fn states(events: &[StreamEvent]) -> Vec<StreamState> {
        events.iter().map(|e| e.state).collect()
    }

    fn delta_text(events: &[StreamEvent]) -> String {
        events
            .iter()
            .filter(|e| e.state == StreamState::Delta)
            .filter_map(|e| e.delta.as_deref())
            .collect()
    }

    const CHUNKS: [&str; 6] = ["He", "llo", ", ", "wör", "ld", "!"];

    #[test]
    fn any_permutation_with_duplicates_assembles_once() {
        let expected: String = CHUNKS.concat();
        let orders: Vec<Vec<u64>> = vec![
            vec![0, 1, 2, 3, 4, 5],
            vec![5, 4, 3, 2, 1, 0],
            vec![2, 0, 0, 5, 1, 2, 4, 3, 3, 5],
            vec![1, 3, 5, 0, 2, 4, 0, 1, 2, 3, 4, 5],
            vec![0, 1, 4, 4, 2, 1, 5, 3],
            // Reset and resume: 0..=2 and 4 arrived, then the server re-sends everything from 3.
            vec![0, 1, 2, 4, 3, 4, 5],
            // Reset and resume after a gap: only 0, 1 and 5 arrived, resume from 2 re-sends 2..=5.
            vec![0, 5, 1, 2, 3, 4, 5],
        ];
        for order in orders {
            let mut st = Streams::new(cfg());
            let mut events = st.on_start(t(0), "s");
            let mut seen = [false; 6];
            for &seq in &order {
                let v = st.on_chunk(t(1), "s", seq, CHUNKS[seq as usize]);
                // A chunk is a duplicate exactly when it was received before.
                assert_eq!(v.duplicate, seen[seq as usize], "order {order:?} seq {seq}");
                seen[seq as usize] = true;
                events.extend(v.events);
            }
            events.extend(st.on_end(t(2), "s", Some(6)));
            assert_eq!(st.content("s"), Some(expected.as_str()), "order {order:?}");
            assert_eq!(delta_text(&events), expected, "order {order:?}");
            assert_eq!(events.first().map(|e| e.state), Some(StreamState::Started));
            assert_eq!(events.last().map(|e| e.state), Some(StreamState::Done));
            assert_eq!(events.last().map(|e| e.len), Some(expected.len()));
            assert_eq!(st.state("s"), Some(StreamState::Done));
        }
    }

    #[test]
    fn unknown_stream_chunk_starts_it_and_len_counts_bytes() {
        let mut st = Streams::new(cfg());
        let v = st.on_chunk(t(0), "s", 0, "wö");
        assert_eq!(
            states(&v.events),
            [StreamState::Started, StreamState::Delta]
        );
        assert_eq!(v.events[1].len, 3);
        assert_eq!(st.state("s"), Some(StreamState::Delta));
        assert!(st.is_live("s"));
    }

    #[test]
    fn start_is_ignored_for_live_finished_and_invalid_ids() {
        let mut st = Streams::new(cfg());
        assert_eq!(states(&st.on_start(t(0), "a")), [StreamState::Started]);
        assert_eq!(st.state("a"), Some(StreamState::Started));
        assert!(st.on_start(t(1), "a").is_empty());
        st.on_end(t(2), "a", None);
        assert!(st.on_start(t(3), "a").is_empty());
        assert_eq!(st.state("a"), Some(StreamState::Done));
        assert!(st.on_start(t(0), "").is_empty());
        let long = "x".repeat(129);
        assert!(st.on_start(t(0), &long).is_empty());
        assert!(st.on_chunk(t(0), &long, 0, "x").events.is_empty());
        assert_eq!(st.state(&long), None);
        assert_eq!(
            states(&st.on_start(t(0), &"x".repeat(128))),
            [StreamState::Started]
        );
    }

    #[test]
    fn stalls_once_and_comes_back() {
        let mut st = Streams::new(cfg());
        st.on_start(t(0), "s");
        st.on_chunk(t(10), "s", 0, "a");
        assert_eq!(st.next_deadline(), Some(t(110)));
        assert!(st.on_timeout(t(109)).is_empty());
        assert_eq!(states(&st.on_timeout(t(110))), [StreamState::Stalled]);
        assert_eq!(st.state("s"), Some(StreamState::Stalled));
        assert!(st.is_live("s"));
        // Stalled once: no repeat and no deadline until a chunk arrives.
        assert!(st.on_timeout(t(500)).is_empty());
        assert_eq!(st.next_deadline(), None);
        let v = st.on_chunk(t(600), "s", 1, "b");
        assert_eq!(states(&v.events), [StreamState::Delta]);
        assert_eq!(st.state("s"), Some(StreamState::Delta));
        assert_eq!(st.next_deadline(), Some(t(700)));
        assert_eq!(states(&st.on_timeout(t(700))), [StreamState::Stalled]);
    }

    #[test]
    fn late_timeout_fires_each_expired_once_and_next_deadline_is_later() {
        let mut st = Streams::new(cfg());
        st.on_start(t(0), "b");
        st.on_start(t(10), "a");
        st.on_start(t(500), "c");
        let ev = st.on_timeout(t(300));
        assert_eq!(states(&ev), [StreamState::Stalled, StreamState::Stalled]);
        let ids: Vec<&str> = ev.iter().map(|e| e.stream_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        let next = st.next_deadline();
        assert_eq!(next, Some(t(600)));
        assert!(next.is_none_or(|d| d > t(300)));
        st.on_timeout(t(10_000));
        assert_eq!(st.next_deadline(), None);
    }

    #[test]
    fn interrupt_then_chunks_are_ignored() {
        let mut st = Streams::new(cfg());
        st.on_chunk(t(0), "s", 0, "a");
        st.on_chunk(t(0), "s", 2, "c");
        let ev = st.interrupt("s").expect("live");
        assert_eq!(states(&ev), [StreamState::Interrupted]);
        assert_eq!(ev[0].len, 1);
        let v = st.on_chunk(t(1), "s", 1, "b");
        assert!(v.events.is_empty() && !v.duplicate);
        assert_eq!(st.content("s"), Some("a"));
        assert!(st.resumes().is_empty());
        assert_eq!(st.next_deadline(), None);
        assert_eq!(st.interrupt("s"), Err(InterruptError::Finished));
        assert_eq!(st.interrupt("nope"), Err(InterruptError::Unknown));
        assert!(st.on_end(t(2), "s", None).is_empty());
        assert!(st.on_error(t(2), "s", "x").is_empty());
    }

    #[test]
    fn end_with_missing_chunks_completes_later() {
        let mut st = Streams::new(cfg());
        st.on_chunk(t(0), "s", 0, "a");
        st.on_chunk(t(0), "s", 2, "c");
        assert!(st.on_end(t(1), "s", Some(3)).is_empty());
        assert!(st.is_live("s"));
        assert_eq!(st.resumes(), [("s".to_owned(), 1)]);
        // A chunk past the announced end is not content.
        let v = st.on_chunk(t(2), "s", 3, "d");
        assert!(v.events.is_empty() && !v.duplicate);
        let v = st.on_chunk(t(2), "s", 1, "b");
        assert_eq!(
            states(&v.events),
            [StreamState::Delta, StreamState::Delta, StreamState::Done]
        );
        assert_eq!(delta_text(&v.events), "bc");
        assert_eq!(st.content("s"), Some("abc"));
        assert!(st.resumes().is_empty());
        // A done stream reports later chunks as duplicates.
        assert!(st.on_chunk(t(3), "s", 0, "a").duplicate);
        assert!(st.on_end(t(3), "s", None).is_empty());
    }

    #[test]
    fn end_without_total_or_complete_is_done_now_and_unknown_is_ignored() {
        let mut st = Streams::new(cfg());
        st.on_chunk(t(0), "a", 0, "x");
        assert_eq!(states(&st.on_end(t(1), "a", Some(1))), [StreamState::Done]);
        st.on_chunk(t(0), "b", 0, "x");
        st.on_chunk(t(0), "b", 3, "y");
        assert_eq!(states(&st.on_end(t(1), "b", None)), [StreamState::Done]);
        assert_eq!(st.content("b"), Some("x"));
        assert!(st.on_end(t(1), "zz", None).is_empty());
        assert!(st.on_error(t(1), "zz", "e").is_empty());
    }

    #[test]
    fn error_fails_live_stream_with_truncated_text() {
        let mut st = Streams::new(cfg());
        st.on_chunk(t(0), "s", 0, "abc");
        let err = format!("{}é", "x".repeat(255)); // é straddles byte 256
        let ev = st.on_error(t(1), "s", &err);
        assert_eq!(states(&ev), [StreamState::Failed]);
        assert_eq!(ev[0].error.as_deref(), Some("x".repeat(255).as_str()));
        assert_eq!(ev[0].len, 3);
        let v = st.on_chunk(t(2), "s", 1, "d");
        assert!(v.events.is_empty() && !v.duplicate);
        assert!(st.on_error(t(2), "s", "again").is_empty());
    }

    #[test]
    fn content_cap_fails_and_keeps_content() {
        let mut st = Streams::new(StreamsConfig {
            max_bytes: 5,
            ..cfg()
        });
        st.on_chunk(t(0), "s", 0, "abc");
        st.on_chunk(t(0), "s", 2, "e");
        let v = st.on_chunk(t(0), "s", 1, "d");
        // "d" fits (4 bytes), draining "e" reaches exactly 5: still fine.
        assert_eq!(states(&v.events), [StreamState::Delta, StreamState::Delta]);
        let v = st.on_chunk(t(0), "s", 3, "f");
        assert_eq!(states(&v.events), [StreamState::Failed]);
        assert_eq!(
            v.events[0].error.as_deref(),
            Some("stream exceeded max_bytes (5)")
        );
        assert_eq!(st.content("s"), Some("abcde"));
        assert_eq!(st.state("s"), Some(StreamState::Failed));
        assert!(st.on_chunk(t(0), "s", 4, "").events.is_empty());
    }

    #[test]
    fn pending_cap_drops_and_resume_recovers() {
        let mut st = Streams::new(StreamsConfig {
            max_pending: 2,
            ..cfg()
        });
        st.on_start(t(0), "s");
        for seq in 1..=4 {
            assert!(!st.on_chunk(t(0), "s", seq, CHUNKS[seq as usize]).duplicate);
        }
        // 3 and 4 were dropped, so they are not duplicates when re-sent.
        assert!(!st.on_chunk(t(0), "s", 3, CHUNKS[3]).duplicate);
        assert_eq!(st.resumes(), [("s".to_owned(), 0)]);
        let mut events = Vec::new();
        for seq in 0..6 {
            events.extend(st.on_chunk(t(1), "s", seq, CHUNKS[seq as usize]).events);
        }
        assert_eq!(st.content("s"), Some(CHUNKS.concat().as_str()));
        assert_eq!(delta_text(&events), CHUNKS.concat());
    }

    #[test]
    fn resumes_lists_unfinished_by_id_with_next_seq() {
        let mut st = Streams::new(cfg());
        st.on_chunk(t(0), "b", 0, "x");
        st.on_chunk(t(0), "b", 1, "y");
        st.on_start(t(0), "a");
        st.on_chunk(t(0), "c", 0, "z");
        st.on_end(t(0), "c", None);
        st.on_start(t(0), "d");
        st.on_timeout(t(1_000)); // stalled streams still resume
        assert_eq!(
            st.resumes(),
            [
                ("a".to_owned(), 0),
                ("b".to_owned(), 2),
                ("d".to_owned(), 0)
            ]
        );
    }

    #[test]
    fn capacity_evicts_oldest_finished() {
        let mut st = Streams::new(StreamsConfig {
            max_streams: 3,
            ..cfg()
        });
        for id in ["x", "a", "b"] {
            st.on_start(t(0), id);
        }
        st.on_end(t(0), "b", None);
        st.on_end(t(0), "a", None); // "a" created before "b", so it goes first
        assert_eq!(states(&st.on_start(t(0), "c")), [StreamState::Started]);
        assert_eq!(st.state("a"), None);
        assert_eq!(st.state("b"), Some(StreamState::Done));
        let v = st.on_chunk(t(0), "d", 0, "q");
        assert_eq!(
            states(&v.events),
            [StreamState::Started, StreamState::Delta]
        );
        assert_eq!(st.state("b"), None);
        assert!(st.is_live("x") && st.is_live("c") && st.is_live("d"));
        // A late chunk for an evicted stream does not revive it.
        let v = st.on_chunk(t(0), "a", 7, "late");
        assert!(v.events.is_empty());
        assert_eq!(st.state("a"), None);
    }

    #[test]
    fn capacity_refuses_when_all_live() {
        let mut st = Streams::new(StreamsConfig {
            max_streams: 2,
            ..cfg()
        });
        st.on_start(t(0), "a");
        st.on_start(t(0), "b");
        let ev = st.on_start(t(0), "c");
        assert_eq!(states(&ev), [StreamState::Failed]);
        assert_eq!(ev[0].error.as_deref(), Some("too many live streams (2)"));
        assert_eq!(st.state("c"), None);
        let v = st.on_chunk(t(1), "c", 0, "x");
        assert_eq!(states(&v.events), [StreamState::Failed]);
        assert!(!v.duplicate);
        assert_eq!(st.state("c"), None);
        assert_eq!(st.resumes().len(), 2);
        // Once a slot is finished, the stream can start.
        st.interrupt("a").expect("live");
        assert_eq!(
            states(&st.on_chunk(t(2), "c", 0, "x").events),
            [StreamState::Started, StreamState::Delta]
        );
    }

    #[test]
    fn config_defaults_and_rejects_unknown_fields() {
        let c: StreamsConfig = serde_json::from_str(r#"{"stall_ms": 5}"#).expect("valid");
        assert_eq!(
            c,
            StreamsConfig {
                stall_ms: 5,
                max_bytes: 1_048_576,
                max_streams: 16,
                max_pending: 256,
            }
        );
        assert!(serde_json::from_str::<StreamsConfig>(r#"{"stallMs": 5}"#).is_err());
    }

    #[test]
    fn hostile_seqs_do_not_panic() {
        let mut st = Streams::new(StreamsConfig {
            stall_ms: u64::MAX,
            ..cfg()
        });
        st.on_chunk(t(u64::MAX), "s", u64::MAX, "x");
        st.on_end(t(u64::MAX), "s", Some(u64::MAX));
        assert_eq!(st.next_deadline(), Some(t(u64::MAX)));
        assert_eq!(st.resumes(), [("s".to_owned(), 0)]);
        assert_eq!(st.content("s"), Some(""));
    }
}
