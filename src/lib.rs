//! revsync: the daemon that keeps revenue systems in agreement.
//!
//! Data flows one way: connector -> engine -> store -> dispatcher -> connector.
//! This crate is the daemon; connectors live in `connectors/*` and speak to it
//! only through `revsync-sdk`.

pub mod alerts;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod console;
pub mod demo;
pub mod discover;
pub mod engine;
pub mod export;
pub mod format;
pub mod http;
pub mod json;
pub mod kpi;
pub mod metrics;
pub mod plan;
pub mod registry;
pub mod serve;
pub mod status;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod workflows;
