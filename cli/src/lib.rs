//! The fedsky command line as a library, so the operator reuses its pure
//! parts: [`placement`] converts an AggregatorPlacement spec into the
//! placement model's input and a solve into the resource's status — the
//! controller calls the same functions, so `fedsky placement solve` and the
//! cluster give the same answer for the same manifest. [`catalog`] is
//! `fedsky catalog refresh`, the catalog overlay from the EC2 API.

pub mod catalog;
pub mod commands;
pub mod manifest;
pub mod placement;
pub mod render;
