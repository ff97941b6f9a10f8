//! Talks to registries: `WWW-Authenticate` challenges and tokens, docker `config.json`
//! credentials and credential helpers, and the pull and push engines that move images between
//! a registry and the local store (`berth-store`).

pub mod admin;
pub mod challenge;
pub mod credentials;
mod error;
pub mod local;
pub mod platform;
pub mod progress;
pub mod pull;
pub mod push;
pub mod registry;
pub mod settings;

pub use error::{ClientError, Result};
/// HTTP methods, for [`registry::RegistryClient::api`].
pub use reqwest::Method;
