//! End-to-end tests: the real `sluice` binary on loopback ports, driven over HTTP and through
//! its CLI. One test binary (modules below) so the suite links once.

mod api;
mod auth;
mod awe;
mod bad_input;
mod cli;
mod common;
mod crash;
mod dashboard;
mod faults;
mod ingest;
mod keyless;
mod limits;
mod miniqueue;
mod nodes;
mod push;
mod queue_creation;
mod secrets;
mod seeds;
mod sqs_auth;
mod stream;
mod tls;
