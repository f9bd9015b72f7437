//! One module per kind.

pub mod member_cluster;
