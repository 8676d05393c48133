#![allow(unreachable_pub)] // a test crate: nothing here is reachable from outside anyway
//! End-to-end tests on a real Kafka-protocol broker (tansu locally) and PostgreSQL. Each test gets
//! its own database and its own topic prefix, so tests never share state.
//!
//! They need the broker at HOTLINE_KAFKA_BROKERS (default 127.0.0.1:9092) and PostgreSQL at
//! HOTLINE_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432); `deploy/local/test` starts
//! both.

mod auth;
mod calendar;
mod corrections;
mod crash;
mod dead_letter;
mod deadlines;
mod extensions;
mod handling;
mod http_errors;
mod import;
mod local_stack;
mod pipeline;
mod proactive;
mod rates;
mod repeats;
mod returns;
mod support;
mod tracing;
mod webhooks;
