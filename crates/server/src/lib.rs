//! The sluice server and its clients, as a library: the `sluice` binary (`main.rs`) parses the
//! command line and calls [`server::run`] or one of the [`cli`] commands. The fuzz targets in
//! `fuzz/` call the parsers through [`fuzzing`]. Everything else is internal.

mod api;
mod auth;
mod chunk_watch;
pub mod cli;
pub mod config;
mod delivery;
mod direct_h1;
#[doc(hidden)]
pub mod fuzzing;
mod human_errors;
mod ingest;
mod rates;
mod redact;
pub mod server;
mod telemetry;
mod tls;
mod ui;
