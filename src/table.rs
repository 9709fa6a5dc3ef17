//! A small query result as text (column names, rows of optional values) and its
//! Markdown-style rendering, shared by `show`, Jinja's `print_table` and reports.

/// Column names and text values; `None` is SQL NULL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// Renders rows as a Markdown-style table, as dbt prints them.
pub fn format_table(t: &Table) -> String {
    let cells: Vec<Vec<String>> = t
        .rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| c.clone().unwrap_or_else(|| "null".into()))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = (0..t.columns.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r.get(i).map(|c| c.chars().count()).unwrap_or(0))
                .chain([t.columns[i].chars().count(), 3])
                .max()
                .unwrap_or(3)
        })
        .collect();
    let line = |vals: Vec<String>| {
        let parts: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        format!("| {} |", parts.join(" | "))
    };
    let mut out = vec![line(t.columns.clone())];
    out.push(line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    for r in cells {
        out.push(line(r));
    }
    out.join("\n")
}
