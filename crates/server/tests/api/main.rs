//! Integration tests of the `/v2` API: the real server on 127.0.0.1:0, spoken to over HTTP.
//! One module per part of the distribution spec.

mod common;

mod auth;
mod auth_attacks;
mod blobs;
mod discovery;
mod expiry;
mod gc;
mod lifecycle;
mod manifests;
mod matrix;
mod openapi;
mod operations;
mod replicas;
mod spec_sequence;
mod uploads;
