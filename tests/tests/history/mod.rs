//! The commerce history checker's parts (see `commerce_history.rs`).

pub mod api;
pub mod check;
pub mod model;
pub mod ops;
