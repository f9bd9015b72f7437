//! fedsky
