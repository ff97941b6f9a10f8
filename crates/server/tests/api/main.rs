//! Integration tests of the `/v2` API: the real server on 127.0.0.1:0, spoken to over HTTP.
//! One module per part of the distribution spec.

mod common;

mod account_security;
mod audit_pulls;
mod auth;
mod auth_attacks;
mod bad_input;
mod blobs;
mod concurrency;
mod discovery;
mod expiry;
mod gc;
mod lifecycle;
mod limits;
mod manifests;
mod matrix;
mod openapi;
mod operations;
mod replicas;
mod security;
mod spec_sequence;
mod uploads;
