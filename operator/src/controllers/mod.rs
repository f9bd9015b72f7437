//! One module per kind.

pub mod federated_job;
pub mod member_cluster;
pub mod participant_pool;
