//! The `hotline` binary's library: configuration, telemetry, the stack runner and the CLI commands.

pub mod app;
pub mod classifier;
pub mod cli;
pub mod commands;
pub mod config;
pub mod proactive_bench;
pub mod telemetry;
