//! Talks to registries: `WWW-Authenticate` challenges and tokens, docker `config.json`
//! credentials and credential helpers, and the pull and push engines.

pub mod challenge;
pub mod credentials;
pub mod platform;
