//! One module per kind.

pub mod member_cluster;
pub mod participant_pool;
