//! `sockline-tokio`: the tokio + tungstenite driver for `sockline-core`: an async client, the
//! reference hub server and the `sockline` CLI. The driver only moves bytes and time; every
//! decision is the core session's.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "cli")]
pub mod cli;
pub mod client;
#[cfg(feature = "cli")]
pub mod demo;
#[cfg(feature = "hub")]
pub mod hub;
mod mailbox;
pub mod transport;

pub use client::{
    Client, ClientError, ClientOptions, EventStream, OutputStream, StreamDeltas, StreamUpdate,
    Subscription,
};
