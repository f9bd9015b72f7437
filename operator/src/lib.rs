//! The fedsky operator.
//!
//! Controllers follow one shape: `mod.rs` wires reconcile and error policy, pure modules
//! compute desired state and status, and a thin layer applies them with server-side apply.

pub mod cache;
pub mod capacity;
pub mod clusters;
pub mod context;
pub mod controllers;
pub mod error;
pub mod http;
pub mod images;
pub mod leader;
pub mod metrics;
pub mod models;
pub mod names;
pub mod orchestrator;
pub mod pki;
pub mod quantity;
pub mod run;
pub mod runtime;
pub mod secret_scope;
pub mod status_patch;
pub mod telemetry;
pub mod tracking;
pub mod workloads;

pub use context::Context;
pub use error::Error;

/// Field manager for every server-side apply fedsky makes.
pub const FIELD_MANAGER: &str = "fedsky-operator";
