//! dbt-compatible artifacts written under the target directory.

pub mod manifest;
