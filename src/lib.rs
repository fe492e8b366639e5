//! kvcache: an in-memory key-value cache server.
//!
//! Bytes flow one way through the layers:
//!
//! ```text
//! socket bytes -> protocol (decode) -> Request -> cmd::execute -> store -> Response -> protocol (encode)
//! ```
//!
//! [`store`] and [`protocol`] know nothing of tokio or the network; [`server`] owns sockets,
//! tasks and shutdown; `cmd` is the one place where requests meet the store; [`snapshot`]
//! writes the store to a file and reads it back (warm restarts).

pub mod client;
pub mod cmd;
pub mod config;
pub mod protocol;
pub mod server;
pub mod snapshot;
pub mod stats;
pub mod store;
