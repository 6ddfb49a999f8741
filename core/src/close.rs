//! The WebSocket close codes sockline uses, client and hub, in one table (see `docs/protocol.md`).

/// Normal closure: a user close, a session taken over by a newer connection.
pub const NORMAL: u16 = 1000;
/// Going away: the hub closes an idle connection (the client reconnects).
pub const GOING_AWAY: u16 = 1001;
/// A binary frame: protocol v1 is text only.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// A close frame without a status code (never sent, only reported).
pub const NO_STATUS: u16 = 1005;
/// The transport ended without a close frame (never sent, only reported).
pub const ABNORMAL: u16 = 1006;
/// A policy violation: no `hello`, a wrong protocol version.
pub const POLICY: u16 = 1008;
/// A frame over the size limit.
pub const TOO_BIG: u16 = 1009;
/// Service restart: the hub shuts down; its reason says when to come back (the client reconnects).
pub const SERVICE_RESTART: u16 = 1012;
/// Try again later: the hub cannot reach its broker to resume the session (the client
/// reconnects).
pub const TRY_AGAIN_LATER: u16 = 1013;
/// The client abandons a transport itself (timeouts, transport errors).
pub const ABANDONED: u16 = 4000;
/// The hub refuses the credential; the client waits for a new token.
pub const UNAUTHORIZED: u16 = 4001;
/// The client kept sending over the hub's inbound rate.
pub const RATE_LIMITED: u16 = 4008;
/// The client read too slowly for what it is sent.
pub const SLOW_CONSUMER: u16 = 4009;
