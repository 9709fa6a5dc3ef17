//! A bounded fuzz test of the inputs users write: mutated YAML (dbt_project.yml,
//! properties files) and Jinja (models, macros) go through `parse` and
//! `compile`; whatever the input, Strata answers with exit 0, 1 or 2 and never
//! panics, overflows its stack or hangs. Deterministic: the seed and the
//! number of cases come from STRATA_FUZZ_SEED and STRATA_FUZZ_CASES (defaults
//! keep it to seconds; set more cases for a longer campaign).

mod common;

use clap::Parser;
use common::*;
use strata::engine::Interrupt;

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const YAML_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ": ",
    "- ",
    "\n",
    "\n  ",
    "\n    - ",
    "\t",
    "\"",
    "'",
    "#",
    "&a ",
    "*a",
    "<<: *a",
    "!!str ",
    "!!binary ",
    "? ",
    "|\n  ",
    ">-\n  ",
    "{{ ",
    " }}",
    "{% ",
    " %}",
    "var('x')",
    "env_var('HOME')",
    "~",
    "null",
    "yes",
    "1e400",
    "-.inf",
    "0x1F",
    "é",
    "🙂",
    "\u{feff}",
    "\\",
    "%YAML 1.2\n---\n",
    "---\n",
    "...\n",
    "+materialized: table",
    "tests: [unique, not_null]",
    "columns:\n      - name: id",
    "models:",
    "name: m",
    "{a: {b: [c",
];

const JINJA_TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    "(",
    ")",
    "[",
    "]",
    ",",
    "'",
    "\"",
    " ",
    "\n",
    "ref('a')",
    "ref('nope')",
    "source('s', 't')",
    "var('x', 1)",
    "config(materialized='table')",
    "{% set l = [] %}",
    "{% do l.append(l) %}",
    "{% do l.append(1) %}",
    "{{ l }}",
    "{% set d = {} %}",
    "{% do d.update({'k': d}) %}",
    "{{ tojson(l) }}",
    "{{ toyaml(d) }}",
    "{% for i in range(5) %}",
    "{% endfor %}",
    "{% if true %}",
    "{% else %}",
    "{% endif %}",
    "{% macro m(x) %}",
    "{% endmacro %}",
    "{{ m(1) }}",
    "{{ m(m) }}",
    "{% call m(1) %}",
    "{% endcall %}",
    "{{ caller() }}",
    "{{ return(1) }}",
    "{{ exceptions.raise_compiler_error('x') }}",
    "{% set ns = namespace(v=[]) %}",
    "{% for i in range(2000) %}{% set ns.v = [ns.v] %}{% endfor %}{{ ns.v }}",
    "{{ modules.datetime.datetime.now() }}",
    "{{ adapter.quote('x') }}",
    "{{ this }}",
    "{{ 1 / 0 }}",
    "{{ 'x' * 100000 }}",
    "{{ range(100000) | list | length }}",
    "{{ loop }}",
    "{% raw %}",
    "{% endraw %}",
    "{{ fromyaml('[[[[') }}",
    "{{ fromjson('{') }}",
    "é",
    "\u{0}",
    "{{ zip(l, l) | list }}",
    "{{ l | map('upper') | list }}",
    "{{ [l, l] }}",
    "{{ d.items() }}",
    "{% filter upper %}",
    "{% endfilter %}",
    "{% with a = 1 %}",
    "{% endwith %}",
    "{{ self }}",
];

const MODEL: &str = "{{ config(materialized='view') }}\n{% set cols = ['id', 'name'] %}\nselect {% for c in cols %}{{ c }}{% if not loop.last %}, {% endif %}{% endfor %}\nfrom {{ ref('a') }}\n";
const MACRO: &str = "{% macro cents(x) %}({{ x }} / 100.0){% endmacro %}\n{% macro pick(xs) %}{% for x in xs %}{% if x > 1 %}{{ return(x) }}{% endif %}{% endfor %}{% endmacro %}\n";
const PROPERTIES: &str = "version: 2\nmodels:\n  - name: b\n    description: a model\n    columns:\n      - name: id\n        tests: [unique, not_null]\n      - name: name\n        tests:\n          - accepted_values:\n              values: ['x', 'y']\nsources:\n  - name: s\n    tables:\n      - name: t\n";
const PROJECT: &str = "name: proj\nversion: '1.0'\nprofile: proj\nvars:\n  x: 1\n  nested: {a: [1, 2, {b: c}]}\nmodels:\n  proj:\n    +materialized: view\n    staging:\n      +schema: stg\n";

/// One mutation of `base`: insert, delete or repeat a stretch.
fn mutate(rng: &mut Rng, base: &str, tokens: &[&str]) -> String {
    let mut s: Vec<char> = base.chars().collect();
    for _ in 0..=rng.below(6) {
        let at = rng.below(s.len() + 1);
        match rng.below(4) {
            0 | 1 => {
                let t = rng.pick(tokens);
                s.splice(at..at, t.chars());
            }
            2 if !s.is_empty() => {
                let end = (at + rng.below(12)).min(s.len());
                s.drain(at.min(end)..end);
            }
            _ => {
                let end = (at + rng.below(20)).min(s.len());
                let piece: Vec<char> = s[at.min(end)..end].to_vec();
                for _ in 0..rng.below(50) {
                    s.splice(at..at, piece.iter().copied());
                }
            }
        }
    }
    s.into_iter().collect()
}

fn invoke(dir: &std::path::Path, command: &str) -> std::process::ExitCode {
    let dir = dir.to_string_lossy().to_string();
    let argv = vec!["strata", command, "--project-dir", &dir, "-q"];
    strata::run(strata::cli::Cli::parse_from(argv), &Interrupt::new())
}

#[test]
fn mutated_yaml_and_jinja_never_crash() {
    let seed: u64 = std::env::var("STRATA_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026);
    let cases: usize = std::env::var("STRATA_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let dir = project(&[]);
    let root = dir.path().to_path_buf();
    // Runs on a thread with the stack the binary gives its renderers.
    let worker = std::thread::Builder::new()
        .stack_size(strata::jinja::STACK_BYTES)
        .spawn(move || {
            let mut rng = Rng(seed | 1);
            let write = |rel: &str, text: &str| {
                let p = root.join(rel);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, text).unwrap();
            };
            for case in 0..cases {
                let mut files = vec![
                    ("dbt_project.yml", PROJECT.to_string()),
                    ("models/props.yml", PROPERTIES.to_string()),
                    ("models/a.sql", "select 1 as id, 'x' as name".to_string()),
                    ("models/b.sql", MODEL.to_string()),
                    ("macros/m.sql", MACRO.to_string()),
                ];
                // Mutate one or two of them, YAML or Jinja.
                for _ in 0..=rng.below(2) {
                    let i = rng.below(files.len());
                    let tokens = if files[i].0.ends_with(".yml") {
                        YAML_TOKENS
                    } else {
                        JINJA_TOKENS
                    };
                    files[i].1 = mutate(&mut rng, &files[i].1, tokens);
                }
                for (rel, text) in &files {
                    write(rel, text);
                }
                for command in ["parse", "compile"] {
                    let started = std::time::Instant::now();
                    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        invoke(&root, command)
                    }));
                    let shown: String = files
                        .iter()
                        .map(|(rel, text)| format!("--- {rel}\n{text}\n"))
                        .collect();
                    let code = code.unwrap_or_else(|_| {
                        panic!("case {case} (seed {seed}): `{command}` panicked on\n{shown}")
                    });
                    assert!(
                        [0u8, 1, 2]
                            .iter()
                            .any(|c| std::process::ExitCode::from(*c) == code),
                        "case {case}: `{command}` exited with {code:?} on\n{shown}"
                    );
                    assert!(
                        started.elapsed() < std::time::Duration::from_secs(30),
                        "case {case}: `{command}` took {:?} on\n{shown}",
                        started.elapsed()
                    );
                }
            }
        })
        .unwrap();
    worker.join().expect("no panic escaped");
}
