//! dbt-compatible artifacts written under the target directory.

pub mod compile_memo;
pub mod manifest;
pub mod run_results;
