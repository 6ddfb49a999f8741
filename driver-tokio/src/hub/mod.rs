//! The reference hub: the server side of protocol v1 that every client is tested against.

pub mod broker;
pub mod chaos;
pub mod logic;
pub mod server;

pub use broker::{Broker, InMemoryBroker};
pub use chaos::ChaosConfig;
pub use logic::{Action, ConnId, HubCore, HubSettings};
pub use server::{Hub, HubConfig, HubHandle, HubState};
