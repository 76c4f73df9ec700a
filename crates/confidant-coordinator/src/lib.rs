//! The Confidant coordinator.
//!
//! For now this crate holds only [`store`]: the coordinator's state at rest, a transactional
//! key-value store whose every value is encrypted under a data key that the TEE seals. The
//! `core` state machine and the `api` transport come later and build on the [`store::Store`]
//! trait, so `core` runs its logic against any backend (redb here, etcd later, an in-memory
//! fake in tests) without I/O details.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod ca;
pub mod core;
pub mod recovery;
pub mod server;
pub mod store;
