//! Who a connection is and what it may join. Checking a token's signature, algorithm and expiry
//! is a capability the driver passes in (like its randomness: `jsonwebtoken` in the tokio hub);
//! what a verdict means (which error, which close, when a token runs out) is decided here.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// What a verified token says about its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The user the connection is (the token's `sub`).
    pub sub: String,
    /// How long the token stays valid, from its `exp`, counted when it was verified.
    pub expires_in_ms: u64,
    /// The projects the user may join (the `projects` claim; `None`: every project).
    pub projects: Option<BTreeSet<u64>>,
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The `hello` (or `auth`) carried no token.
    #[error("a token is required")]
    Missing,
    /// Its `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// The signature does not match the payload under the hub's key.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// Signed with an algorithm the hub does not accept (`none` among them).
    #[error("the token's algorithm is not accepted: {0}")]
    Algorithm(String),
    /// A required claim is absent or of the wrong type.
    #[error("the token has no valid `{0}` claim")]
    MissingClaim(&'static str),
    /// Not a token at all.
    #[error("the token is malformed: {0}")]
    Malformed(String),
}

/// Checks tokens: signature, algorithm and expiry (against the wall clock), then the claims.
pub trait TokenVerifier: Send {
    /// The claims of `token`, or why it is refused.
    fn verify(&self, token: &str) -> Result<Claims, TokenError>;
}

/// Fills buffers with unpredictable bytes: the operating system's CSPRNG, passed in by the
/// driver, for secrets such as session ids.
pub trait SecretSource: Send {
    /// Fills `buf`.
    fn fill(&mut self, buf: &mut [u8]);
}

/// Per-user and per-connection limits of the hub, each refused with its own error code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct HubLimits {
    /// Connections one user may have open on a hub node (`too_many_connections`, close 1013).
    pub max_connections_per_user: usize,
    /// Projects one connection may be a member of (`too_many_projects`).
    pub max_projects_per_connection: usize,
    /// Messages per second one user may send, across all their connections on a node
    /// (`rate_limited`, as the per-connection rate); 0: no such limit.
    pub user_messages_per_sec: u32,
    /// ... and the burst over that rate.
    pub user_burst: u32,
    /// Largest `hello` frame, in bytes (`too_large`, close 1008).
    pub max_hello_bytes: usize,
    /// Longest user id (`hello.userId` or a token's `sub`), in bytes (`bad_message`, close 1008).
    pub max_user_id_bytes: usize,
    /// Agent streams one connection may have running at once (`too_many_streams`).
    pub max_streams_per_connection: usize,
}

impl Default for HubLimits {
    fn default() -> Self {
        HubLimits {
            max_connections_per_user: 32,
            max_projects_per_connection: 64,
            user_messages_per_sec: 400,
            user_burst: 800,
            max_hello_bytes: 8 * 1024,
            max_user_id_bytes: 128,
            max_streams_per_connection: 4,
        }
    }
}

/// What a connection's token allows, while it lasts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Grant {
    /// When the token runs out (the connection is closed then unless it sends a new one).
    pub(crate) expires_at: crate::Timestamp,
    /// Told that it runs out soon.
    pub(crate) warned: bool,
    /// The projects it may join (`None`: all).
    pub(crate) projects: Option<BTreeSet<u64>>,
}

impl Grant {
    pub(crate) fn new(now: crate::Timestamp, claims: Claims) -> Grant {
        Grant {
            expires_at: now.add_ms(claims.expires_in_ms),
            warned: false,
            projects: claims.projects,
        }
    }

    /// Whether the token lets its holder join `project`.
    pub(crate) fn allows(&self, project: u64) -> bool {
        self.projects.as_ref().is_none_or(|p| p.contains(&project))
    }
}

/// Whether a WebSocket upgrade from `origin` (its `Origin` header, if it sent one) is accepted
/// when `allowed` lists the accepted origins (empty: any). A request without an `Origin` is not
/// a browser's (browsers always send one), so cross-site hijacking cannot come that way.
pub fn accepts_origin(allowed: &[String], origin: Option<&str>) -> bool {
    match origin {
        _ if allowed.is_empty() => true,
        None => true,
        Some(o) => allowed.iter().any(|a| {
            a.trim_end_matches('/')
                .eq_ignore_ascii_case(o.trim_end_matches('/'))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_but_for_case_and_a_trailing_slash() {
        let allowed = vec!["https://app.example".to_string()];
        assert!(accepts_origin(&[], Some("https://evil.example")));
        assert!(accepts_origin(&allowed, Some("https://APP.example/")));
        assert!(accepts_origin(&allowed, None), "not a browser");
        assert!(!accepts_origin(&allowed, Some("https://evil.example")));
        assert!(!accepts_origin(&allowed, Some("https://app.example.evil")));
        assert!(!accepts_origin(&allowed, Some("http://app.example")));
        assert!(!accepts_origin(&allowed, Some("null")));
    }

    #[test]
    fn limits_parse_from_camel_case_and_refuse_unknown_keys() {
        let l: HubLimits = serde_json::from_str(r#"{"maxProjectsPerConnection":2}"#).unwrap();
        assert_eq!(l.max_projects_per_connection, 2);
        assert_eq!(l.max_hello_bytes, HubLimits::default().max_hello_bytes);
        assert!(serde_json::from_str::<HubLimits>(r#"{"maxProjects":2}"#).is_err());
    }
}
