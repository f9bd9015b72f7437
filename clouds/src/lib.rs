//! fedsky's cloud side, free of Kubernetes types:
//!
//! - [`credentials`]: typed credentials from a Secret's data, per cloud;
//! - [`auth`]: checking them (AWS STS, a GCP token exchange, a Keystone token) into an
//!   identity and an expiry, or a typed error that says what to fix;
//! - [`provision`]: the aggregator VM of a job on EC2, Compute Engine or Nova, behind one
//!   trait, found again by ownership marks so retries never duplicate it;
//! - [`initializer`]: the cloud-init user data that installs and starts the aggregator.
//!
//! Secret values are held in [`Sensitive`], whose `Debug` and `Display` redact them.

pub mod auth;
pub mod cloud;
pub mod credentials;
pub mod http;
pub mod initializer;
pub mod provision;
pub mod secret;

pub use cloud::Cloud;
pub use secret::Sensitive;
