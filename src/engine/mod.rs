//! The execution engine: runs compiled nodes against a warehouse adapter.

pub mod warehouse;
