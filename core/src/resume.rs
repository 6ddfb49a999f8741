//! Session resume: the server session id and the highest contiguous server `seq` seen.

use std::collections::BTreeSet;

/// What an inbound `seq` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SeqVerdict {
    /// New and in order (or filling a hole).
    New,
    /// New, but it opens a hole after `from`.
    Gap { from: u64, to: u64 },
    /// Already seen.
    Duplicate,
}

/// Tracks what the client has seen of the server's sequence, for `hello{sessionId, lastSeq}`.
#[derive(Clone, Debug)]
pub(crate) struct Resume {
    session_id: Option<String>,
    last_seq: u64,
    ahead: BTreeSet<u64>,
    max_ahead: usize,
}

impl Resume {
    pub(crate) fn new(max_ahead: usize) -> Self {
        Resume {
            session_id: None,
            last_seq: 0,
            ahead: BTreeSet::new(),
            max_ahead: max_ahead.max(1),
        }
    }

    /// The session to resume and the last contiguous seq, for `hello`.
    pub(crate) fn hello_fields(&self) -> (Option<String>, Option<u64>) {
        match &self.session_id {
            Some(id) => (Some(id.clone()), Some(self.last_seq)),
            None => (None, None),
        }
    }

    /// The server's `welcome`: keeps state on a resume, starts afresh otherwise.
    pub(crate) fn on_welcome(&mut self, session_id: &str, resumed: bool, base: Option<u64>) {
        let same = self.session_id.as_deref() == Some(session_id);
        if !(resumed && same) {
            self.session_id = Some(session_id.to_string());
            self.last_seq = base.unwrap_or(0);
            self.ahead.clear();
        }
    }

    /// Classifies an inbound `seq` and records it.
    pub(crate) fn observe(&mut self, seq: u64) -> SeqVerdict {
        if seq <= self.last_seq || self.ahead.contains(&seq) {
            return SeqVerdict::Duplicate;
        }
        if Some(seq) == self.last_seq.checked_add(1) {
            self.last_seq = seq;
            self.drain_contiguous();
            return SeqVerdict::New;
        }
        let highest = self.ahead.last().copied().unwrap_or(self.last_seq);
        let verdict = if seq > highest.saturating_add(1) {
            SeqVerdict::Gap {
                from: self.last_seq,
                to: seq,
            }
        } else {
            SeqVerdict::New
        };
        self.ahead.insert(seq);
        if self.ahead.len() > self.max_ahead {
            // The hole is not being filled: give up on it rather than grow without bound.
            if let Some(first) = self.ahead.pop_first() {
                self.last_seq = first;
                self.drain_contiguous();
            }
        }
        verdict
    }

    /// Advances past seqs already held out of order (seq u64::MAX ends the sequence).
    fn drain_contiguous(&mut self) {
        while let Some(next) = self.last_seq.checked_add(1) {
            if !self.ahead.remove(&next) {
                break;
            }
            self.last_seq = next;
        }
    }

    #[cfg(test)]
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_duplicates_and_holes() {
        let mut r = Resume::new(16);
        r.on_welcome("s1", false, None);
        assert_eq!(r.observe(1), SeqVerdict::New);
        assert_eq!(r.observe(1), SeqVerdict::Duplicate);
        assert_eq!(r.observe(4), SeqVerdict::Gap { from: 1, to: 4 });
        assert_eq!(r.observe(5), SeqVerdict::New);
        assert_eq!(r.last_seq(), 1);
        assert_eq!(r.observe(4), SeqVerdict::Duplicate);
        assert_eq!(r.observe(2), SeqVerdict::New);
        assert_eq!(r.observe(3), SeqVerdict::New);
        assert_eq!(r.last_seq(), 5);
        assert_eq!(r.hello_fields(), (Some("s1".into()), Some(5)));
    }

    #[test]
    fn resume_keeps_state_new_session_resets() {
        let mut r = Resume::new(16);
        assert_eq!(r.hello_fields(), (None, None));
        r.on_welcome("s1", false, None);
        r.observe(1);
        r.on_welcome("s1", true, None);
        assert_eq!(r.last_seq(), 1);
        r.on_welcome("s2", false, Some(10));
        assert_eq!(r.hello_fields(), (Some("s2".into()), Some(10)));
        assert_eq!(r.observe(5), SeqVerdict::Duplicate);
    }

    #[test]
    fn extreme_seqs_never_overflow() {
        let mut r = Resume::new(16);
        r.on_welcome("s", false, Some(u64::MAX - 1));
        assert_eq!(r.observe(u64::MAX), SeqVerdict::New);
        assert_eq!(r.observe(u64::MAX), SeqVerdict::Duplicate);
        let mut r = Resume::new(16);
        r.on_welcome("s", false, None);
        assert_eq!(
            r.observe(u64::MAX),
            SeqVerdict::Gap {
                from: 0,
                to: u64::MAX
            }
        );
        assert_eq!(r.observe(5), SeqVerdict::New);
    }

    #[test]
    fn unfilled_hole_is_abandoned_when_window_overflows() {
        let mut r = Resume::new(2);
        r.on_welcome("s", false, None);
        r.observe(1);
        assert_eq!(r.observe(3), SeqVerdict::Gap { from: 1, to: 3 });
        r.observe(4);
        r.observe(5);
        assert_eq!(r.last_seq(), 5);
    }
}
