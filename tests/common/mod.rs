//! Helpers shared by the integration tests: fixture copies and CLI runs.
#![allow(dead_code)]
// `pub` for each test binary that includes this module.
#![allow(unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Copies a file, or a directory tree (without `target` and `dbt_packages`).
pub fn copy_item(src: &Path, dest: &Path) {
    if src.is_dir() {
        copy_dir(src, dest);
    } else {
        std::fs::copy(src, dest).unwrap();
    }
}

/// A private copy of the repository's demo project (its own profiles.yml too
/// when `with_profiles`).
pub fn copy_demo(with_profiles: bool) -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let items = [
        "dbt_project.yml",
        "selectors.yml",
        "models",
        "macros",
        "seeds",
        "snapshots",
        "data_tests",
        "analyses",
        "data",
    ];
    let profiles = with_profiles.then_some("profiles.yml");
    for item in items.into_iter().chain(profiles) {
        copy_item(&root.join(item), &dir.path().join(item));
    }
    dir
}

fn copy_dir(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "target" || name == "dbt_packages" {
            continue;
        }
        let to = dest.join(&name);
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

/// A private copy of a fixture project (with `strata deps` already run).
pub fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture(name), dir.path());
    if dir.path().join("packages.yml").exists() {
        let r = strata(dir.path(), &["deps"]);
        assert_eq!(r.code, 0, "deps failed: {}", r.stderr);
    }
    dir
}

/// A project made of the given files, on top of a minimal dbt_project.yml and profiles.yml.
pub fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let base = [
        ("dbt_project.yml", "name: proj\nversion: '1.0'\nprofile: proj\n"),
        (
            "profiles.yml",
            "proj:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: localhost\n      user: u\n      dbname: db\n      schema: main\n",
        ),
    ];
    for (path, text) in base.iter().chain(files.iter()) {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

pub fn strata(dir: &Path, args: &[&str]) -> Run {
    strata_env(dir, args, &[])
}

/// `strata` with extra environment variables.
pub fn strata_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .current_dir(dir)
        .env_remove("DBT_PROFILES_DIR")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .expect("run strata");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: normalize(&String::from_utf8_lossy(&out.stderr), dir),
    }
}

/// Removes what changes between runs: temp paths and log timestamps.
pub fn normalize(s: &str, dir: &Path) -> String {
    let s = s.replace(&dir.display().to_string(), "<project>");
    s.lines()
        .map(|l| {
            let b = l.as_bytes();
            if b.len() > 10 && b[2] == b':' && b[5] == b':' && &l[8..10] == "  " {
                l[10..].to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}
pub mod data_api;
pub mod pg;
pub mod redshift;
pub mod s3;

/// A Parquet file of `n` transactions (ids from `first`), in row groups of 2.
pub fn write_parquet(path: &std::path::Path, first: i32, n: i32) {
    use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use std::sync::Arc;
    let schema = Arc::new(
        parquet::schema::parser::parse_message_type(
            "message tx { REQUIRED INT32 id; OPTIONAL BYTE_ARRAY currency (UTF8); REQUIRED INT64 amount_cents; OPTIONAL INT32 booked (DATE); }",
        )
        .unwrap(),
    );
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w =
        SerializedFileWriter::new(file, schema, Arc::new(WriterProperties::builder().build()))
            .unwrap();
    let mut start = first;
    while start < first + n {
        let ids: Vec<i32> = (start..(start + 2).min(first + n)).collect();
        let mut rg = w.next_row_group().unwrap();
        let mut c = rg.next_column().unwrap().unwrap();
        c.typed::<Int32Type>()
            .write_batch(&ids, None, None)
            .unwrap();
        c.close().unwrap();
        // currency: NULL for even ids.
        let defs: Vec<i16> = ids.iter().map(|i| i16::from(i % 2 != 0)).collect();
        let vals: Vec<ByteArray> = ids
            .iter()
            .filter(|i| *i % 2 != 0)
            .map(|_| ByteArray::from("EUR"))
            .collect();
        let mut c = rg.next_column().unwrap().unwrap();
        c.typed::<ByteArrayType>()
            .write_batch(&vals, Some(&defs), None)
            .unwrap();
        c.close().unwrap();
        let cents: Vec<i64> = ids.iter().map(|i| i64::from(*i) * 100 + 5).collect();
        let mut c = rg.next_column().unwrap().unwrap();
        c.typed::<Int64Type>()
            .write_batch(&cents, None, None)
            .unwrap();
        c.close().unwrap();
        let days: Vec<i32> = ids.iter().map(|_| 19723).collect(); // 2024-01-01
        let mut c = rg.next_column().unwrap().unwrap();
        c.typed::<Int32Type>()
            .write_batch(&days, Some(&vec![1; ids.len()]), None)
            .unwrap();
        c.close().unwrap();
        rg.close().unwrap();
        start += 2;
    }
    w.close().unwrap();
}
pub mod curated;
