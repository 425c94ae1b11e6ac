//! End-to-end tests: the real `sluice` binary on loopback ports, driven over HTTP and through
//! its CLI. One test binary (modules below) so the suite links once.

mod api;
mod auth;
mod awe;
mod bad_input;
mod chunked_bodies;
mod cli;
mod cli_commands;
mod cli_queue_rules;
mod common;
mod crash;
mod dashboard;
mod delivery;
mod direct_h1;
mod endpoint_health;
mod faults;
mod ingest;
mod keyless;
mod limits;
mod metrics;
mod miniqueue;
mod nodes;
mod operator;
mod push;
mod queue_creation;
mod queue_rules;
mod readme;
mod schedules;
mod secrets;
mod seeds;
mod serve_cli;
mod sqs_auth;
mod stream;
mod subscriptions;
mod tls;
