//! Subscriptions: which application messages reach which subscriber.

use std::collections::BTreeMap;

use crate::error::SessionError;
pub(crate) use crate::subscription::SubscriptionId;
use crate::wire::{is_valid_type, Envelope};

/// Which message types a subscription matches.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pattern {
    /// Every type (`*`).
    All,
    /// Types starting with the prefix (`agent_stream_*`).
    Prefix(String),
    /// Exactly this type.
    Exact(String),
}

impl Pattern {
    /// Parses `*`, `prefix*` or an exact type.
    pub fn parse(pattern: &str) -> Result<Pattern, SessionError> {
        let bad = |reason: &str| SessionError::InvalidPattern {
            pattern: pattern.chars().take(80).collect(),
            reason: reason.to_string(),
        };
        if pattern == "*" {
            return Ok(Pattern::All);
        }
        let (body, prefix) = match pattern.strip_suffix('*') {
            Some(p) => (p, true),
            None => (pattern, false),
        };
        if body.contains('*') {
            return Err(bad("`*` may only end the pattern"));
        }
        if !is_valid_type(body) {
            return Err(bad("use a message type of 1-64 characters from [A-Za-z0-9_.:-], optionally ending in `*`"));
        }
        Ok(if prefix {
            Pattern::Prefix(body.to_string())
        } else {
            Pattern::Exact(body.to_string())
        })
    }

    /// Whether a message of type `t` matches.
    pub fn matches(&self, t: &str) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Prefix(p) => t.starts_with(p.as_str()),
            Pattern::Exact(e) => t == e,
        }
    }
}

#[derive(Clone, Debug)]
struct Subscription {
    pattern: Pattern,
    project_id: Option<u64>,
}

/// The subscription table; survives reconnects.
#[derive(Clone, Debug, Default)]
pub(crate) struct Router {
    subs: BTreeMap<SubscriptionId, Subscription>,
    next_id: u64,
}

/// Most subscriptions one session may hold.
pub(crate) const MAX_SUBSCRIPTIONS: usize = 4096;

impl Router {
    pub(crate) fn subscribe(
        &mut self,
        pattern: &str,
        project_id: Option<u64>,
    ) -> Result<SubscriptionId, SessionError> {
        let pattern = Pattern::parse(pattern)?;
        if self.subs.len() >= MAX_SUBSCRIPTIONS {
            return Err(SessionError::InvalidPattern {
                pattern: String::new(),
                reason: format!("too many subscriptions (max {MAX_SUBSCRIPTIONS})"),
            });
        }
        self.next_id += 1;
        let id = SubscriptionId(self.next_id);
        self.subs.insert(
            id,
            Subscription {
                pattern,
                project_id,
            },
        );
        Ok(id)
    }

    pub(crate) fn unsubscribe(&mut self, id: SubscriptionId) -> Result<(), SessionError> {
        self.subs
            .remove(&id)
            .map(|_| ())
            .ok_or(SessionError::UnknownSubscription(id))
    }

    /// Every subscription the message matches, in ascending id order.
    pub(crate) fn route(&self, env: &Envelope) -> Vec<SubscriptionId> {
        self.subs
            .iter()
            .filter(|(_, s)| {
                s.pattern.matches(&env.msg_type)
                    && s.project_id.is_none_or(|p| env.project_id == Some(p))
            })
            .map(|(&id, _)| id)
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.subs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::decode;

    fn env(t: &str, project: Option<u64>) -> Envelope {
        let p = project
            .map(|p| format!(r#","projectId":{p}"#))
            .unwrap_or_default();
        decode(&format!(r#"{{"type":"{t}"{p}}}"#), 1024, 64).unwrap()
    }

    #[test]
    fn patterns_parse_and_match() {
        assert_eq!(Pattern::parse("*").unwrap(), Pattern::All);
        assert!(Pattern::parse("agent_stream_*")
            .unwrap()
            .matches("agent_stream_chunk"));
        assert!(!Pattern::parse("agent_stream_*")
            .unwrap()
            .matches("agent_prompt"));
        assert!(Pattern::parse("x").unwrap().matches("x"));
        assert!(!Pattern::parse("x").unwrap().matches("xy"));
        for bad in ["", "**", "a*b", "*a", "a b", "a**"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn routes_by_type_and_project_in_id_order() {
        let mut r = Router::default();
        let a = r.subscribe("project_updated", Some(1)).unwrap();
        let b = r.subscribe("*", None).unwrap();
        let c = r.subscribe("project_*", None).unwrap();
        assert_eq!((a.0, b.0, c.0), (1, 2, 3));
        assert_eq!(r.route(&env("project_updated", Some(1))), vec![a, b, c]);
        assert_eq!(r.route(&env("project_updated", Some(2))), vec![b, c]);
        assert_eq!(r.route(&env("project_updated", None)), vec![b, c]);
        assert_eq!(r.route(&env("chat", None)), vec![b]);
        r.unsubscribe(b).unwrap();
        assert!(r.route(&env("chat", None)).is_empty());
        assert_eq!(r.unsubscribe(b), Err(SessionError::UnknownSubscription(b)));
        assert_eq!(r.subscribe("x", None).unwrap().0, 4);
    }
}
