//! One module per kind.

pub mod aggregator_placement;
pub mod federated_job;
pub mod member_cluster;
pub mod participant_pool;
