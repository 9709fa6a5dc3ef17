//! Enforced model contracts: the model's output must match the YAML columns
//! (names and types) before anything is built, and the table is created with
//! explicit column definitions and constraints, then filled.

use super::PlanError;
use crate::adapter::dialect::{Constraint, TableOptions};
use crate::adapter::{Column, Dialect};

/// A declared column: name, canonical type, constraints.
#[derive(Debug, Clone)]
pub struct Declared {
    pub name: String,
    /// The type as the warehouse names it, without modifiers (for comparing).
    pub data_type: String,
    /// The type as written in YAML (for the DDL, modifiers included).
    pub ddl_type: String,
    pub constraints: Vec<Constraint>,
}

/// Compares declared columns with what the model produces; `Err` lists every
/// mismatch in a table, as dbt does.
pub fn check(declared: &[Declared], produced: &[Column]) -> Result<(), PlanError> {
    let base = |t: &str| t.split('(').next().unwrap_or(t).trim().to_ascii_lowercase();
    let mut rows = Vec::new();
    for d in declared {
        match produced.iter().find(|p| p.name == d.name) {
            None => rows.push(format!(
                "| {} | {} | (missing) | column is missing from the model's output |",
                d.name, d.data_type
            )),
            Some(p) if base(&p.data_type) != base(&d.data_type) => rows.push(format!(
                "| {} | {} | {} | data type mismatch |",
                d.name, d.data_type, p.data_type
            )),
            Some(_) => {}
        }
    }
    for p in produced {
        if !declared.iter().any(|d| d.name == p.name) {
            rows.push(format!(
                "| {} | (not declared) | {} | column is missing from the contract |",
                p.name, p.data_type
            ));
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    Err(PlanError(format!(
        "This model has an enforced contract that failed.\nPlease ensure the name, data_type, and number of columns in your contract match the columns in your model's definition.\n\n| column | contract type | model type | problem |\n| --- | --- | --- | --- |\n{}",
        rows.join("\n")
    )))
}

/// The statements that create `tmp` (a rendered relation) with the contract's
/// DDL and fill it.
pub fn create_and_fill(
    d: &dyn Dialect,
    tmp: &str,
    options: &TableOptions,
    declared: &[Declared],
    sql: &str,
) -> Vec<String> {
    let defs: Vec<String> = declared
        .iter()
        .map(|c| d.column_definition(&c.name, &c.ddl_type, &c.constraints))
        .collect();
    let cols: Vec<String> = declared.iter().map(|c| d.quote_ident(&c.name)).collect();
    vec![
        d.create_table(tmp, &defs, options),
        format!(
            "insert into {tmp} ({})\nselect {}\nfrom (\n{}\n) as model_subq",
            cols.join(", "),
            cols.join(", "),
            sql
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatches_are_listed() {
        let declared = vec![
            Declared {
                name: "id".into(),
                data_type: "integer".into(),
                ddl_type: "int".into(),
                constraints: vec![],
            },
            Declared {
                name: "name".into(),
                data_type: "text".into(),
                ddl_type: "text".into(),
                constraints: vec![],
            },
        ];
        let produced = vec![
            Column {
                name: "id".into(),
                data_type: "bigint".into(),
            },
            Column {
                name: "extra".into(),
                data_type: "text".into(),
            },
        ];
        let e = check(&declared, &produced).unwrap_err().0;
        assert!(
            e.contains("| id | integer | bigint | data type mismatch |"),
            "{e}"
        );
        assert!(e.contains("| name | text | (missing) |"), "{e}");
        assert!(e.contains("| extra | (not declared) | text |"), "{e}");
        assert!(check(
            &declared[..1],
            &[Column {
                name: "id".into(),
                data_type: "integer".into()
            }]
        )
        .is_ok());
    }
}
