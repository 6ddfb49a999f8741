//! The reference hub: the tokio server around `sockline_core::hub::HubCore`, the protocol's
//! server half that every client is tested against.

mod jwt;
mod redis;
mod server;

pub use jwt::{JwtKeyError, JwtVerifier, OsSecrets, MIN_SECRET_BYTES};
pub use redis::{RedisBroker, RedisConfig, Wake};
pub use server::{Hub, HubConfig, HubHandle, HubState};
