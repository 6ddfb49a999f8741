//! Helpers shared by the integration tests that drive tokio clients.

use std::time::Duration;

use sockline_core::Event;
use sockline_tokio::EventStream;
use tokio::time::timeout;

/// How long a test waits for one thing before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Waits for the first event matching `f`, returning what `f` extracted.
pub async fn wait_event<T>(events: &mut EventStream, mut f: impl FnMut(&Event) -> Option<T>) -> T {
    timeout(WAIT, async {
        loop {
            let e = events.recv().await.expect("client still running");
            if let Some(t) = f(&e) {
                return t;
            }
        }
    })
    .await
    .expect("event in time")
}
