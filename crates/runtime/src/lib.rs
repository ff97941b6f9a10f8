//! Containers on this host, for `berth run`: an image's layers unpacked once each into a
//! shared cache, a root filesystem from them (overlayfs, or a copy), an OCI runtime bundle
//! (`config.json`) handed to runc, ports published by a forwarder into the container's network
//! namespace, and each container's state and output under one directory.
//!
//! berth writes no container runtime of its own: runc creates the namespaces and runs the
//! process; this crate prepares what it needs and supervises it.

mod beneath;
pub mod containers;
pub mod control;
pub mod create;
mod error;
pub mod forward;
pub mod layers;
pub mod rootfs;
pub mod runc;
pub mod spec;
pub mod supervise;
pub mod unpack;

pub use error::{Result, RuntimeError};
