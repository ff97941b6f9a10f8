//! Tests of the real `berth` binary: `berth serve` as a child process, crashes, and interop
//! with real registry clients (skopeo, oras).

mod common;

mod crash;
mod interop;
mod serve;
