//! The reference hub: the tokio server around `sockline_core::hub::HubCore`, the protocol's
//! server half that every client is tested against.

pub mod redis;
pub mod server;

pub use self::redis::{RedisBroker, RedisConfig};
pub use server::{Hub, HubConfig, HubHandle, HubState};
