//! An unbounded multi-producer queue for one consumer task that allocates nothing until used:
//! an idle client keeps one small allocation here, where a channel would preallocate a block of
//! slots per client.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

struct Shared<T> {
    /// `None` once the consumer is gone.
    queue: Mutex<Option<VecDeque<T>>>,
    notify: Notify,
    senders: AtomicUsize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Option<VecDeque<T>>> {
        // A panic while holding the lock leaves the queue itself intact.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending side; clones count as senders until dropped.
pub(crate) struct Sender<T>(Arc<Shared<T>>);

/// The receiving side, owned by the consumer task.
pub(crate) struct Receiver<T>(Arc<Shared<T>>);

/// A new mailbox.
pub(crate) fn mailbox<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Some(VecDeque::new())),
        notify: Notify::new(),
        senders: AtomicUsize::new(1),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Sender<T> {
    /// Queues `item`; gives it back if the receiver is gone.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        match self.0.lock().as_mut() {
            Some(q) => q.push_back(item),
            None => return Err(item),
        }
        self.0.notify.notify_one();
        Ok(())
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mailbox::Sender")
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.notify.notify_one();
        }
    }
}

impl<T> Receiver<T> {
    /// The next item, or `None` once every sender is gone and the queue is empty.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        loop {
            // Register interest before checking, so a send in between is not missed.
            let notified = self.0.notify.notified();
            if let Some(item) = self.0.lock().as_mut().and_then(VecDeque::pop_front) {
                return Some(item);
            }
            if self.0.senders.load(Ordering::Acquire) == 0 {
                return None;
            }
            notified.await;
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // Later sends fail, and what was queued is dropped now (waking whoever awaits a reply).
        let queued = self.0.lock().take();
        drop(queued);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_in_order_and_ends_when_senders_are_gone() {
        let (tx, mut rx) = mailbox();
        let tx2 = tx.clone();
        tx.send(1).unwrap();
        tx2.send(2).unwrap();
        drop(tx);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        let waiter = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        drop(tx2);
        assert_eq!(waiter.await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_send_wakes_a_waiting_receiver_and_fails_after_it_is_dropped() {
        let (tx, mut rx) = mailbox();
        let waiter = tokio::spawn(async move {
            let got = rx.recv().await;
            (got, rx)
        });
        tokio::task::yield_now().await;
        tx.send("x").unwrap();
        let (got, rx) = waiter.await.unwrap();
        assert_eq!(got, Some("x"));
        drop(rx);
        assert_eq!(tx.send("y"), Err("y"));
    }
}
