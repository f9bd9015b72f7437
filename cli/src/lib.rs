//! The fedsky command line as a library, so its tests call the commands
//! directly. The spec → model conversion and the outcome → status mapping
//! live in `fedsky-placement-spec`, which the operator's controller calls
//! too, so `fedsky placement solve` and the cluster give the same answer for
//! the same manifest. [`catalog`] is `fedsky catalog refresh`, the catalog
//! overlay from the EC2 API. [`plugin`] is `kubectl fedsky`, which reads jobs,
//! placements and models from a cluster as the kubeconfig's user.

pub mod catalog;
pub mod commands;
pub mod manifest;
pub mod plugin;
pub mod render;
