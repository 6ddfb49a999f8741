//! Inbound deduplication: a bounded window of recently seen message ids.

use std::collections::{BTreeSet, VecDeque};

/// Remembers the last `cap` message ids so a server resend is delivered once.
#[derive(Clone, Debug)]
pub(crate) struct DedupeWindow {
    cap: usize,
    order: VecDeque<String>,
    seen: BTreeSet<String>,
}

impl DedupeWindow {
    pub(crate) fn new(cap: usize) -> Self {
        DedupeWindow {
            cap,
            order: VecDeque::new(),
            seen: BTreeSet::new(),
        }
    }

    /// Records `id`; false if it was already in the window.
    pub(crate) fn insert(&mut self, id: &str) -> bool {
        if self.cap == 0 {
            return true;
        }
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() >= self.cap {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(id.to_string());
        self.seen.insert(id.to_string());
        true
    }

    /// Forgets `id`, so it counts as new again.
    pub(crate) fn forget(&mut self, id: &str) {
        if self.seen.remove(id) {
            self.order.retain(|x| x != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_repeats_within_window_and_forgets_beyond_it() {
        let mut w = DedupeWindow::new(2);
        assert!(w.insert("a"));
        assert!(!w.insert("a"));
        assert!(w.insert("b"));
        assert!(w.insert("c"));
        assert!(w.insert("a"), "a fell out of the window");
        assert!(!w.insert("c"));
        w.forget("c");
        assert!(w.insert("c"), "a forgotten id is new again");
    }

    #[test]
    fn zero_window_disables() {
        let mut w = DedupeWindow::new(0);
        assert!(w.insert("a"));
        assert!(w.insert("a"));
    }
}
