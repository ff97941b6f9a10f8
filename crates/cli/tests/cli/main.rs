//! Tests of the real `berth` binary: `berth serve` as a child process, crashes, interop with
//! real registry clients (skopeo, oras, podman; over TLS with token auth), and the client
//! commands against berth and CNCF distribution.

mod common;
mod harness;

mod client;
mod containers;
mod crash;
mod crash_points;
mod fsck;
mod gc;
mod interop;
mod lifecycle;
mod migrate;
mod real_clients;
mod replicas_interop;
mod serve;
mod serve_check;
mod slow_clients;
mod tls;
