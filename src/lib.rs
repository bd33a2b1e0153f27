//! roomd: a realtime room server. One single-threaded `mio` loop per process
//! ([`worker`]) owns every socket, room and timer in generational slab arenas;
//! WebSocket framing is tungstenite's, messages are MessagePack or JSON
//! ([`protocol`]), and the wire contract is PROTOCOL.md (version 1).

pub mod arena;
pub mod auth;
pub mod bus;
pub mod config;
pub mod conn;
pub mod http;
pub mod hub;
pub mod ipc;
pub mod metrics;
pub mod protocol;
pub mod supervisor;
pub mod timer;
pub mod web;
pub mod worker;

// The core's data, at the paths the rest of the crate names them by.
pub use hub::{history, matcher, names, room, session};

pub use config::Config;
pub use worker::Worker;
