//! The id of a subscription: a leaf the router, events, inputs and errors all name.

use serde::{Deserialize, Serialize};

/// Identifies a subscription; ids count 1, 2, 3, ... in order of `subscribe` calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SubscriptionId(pub u64);

impl std::fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
