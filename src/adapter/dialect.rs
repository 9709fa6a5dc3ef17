//! The SQL a warehouse speaks. Every statement whose text depends on the
//! warehouse is written here; materializations, the engine and the Jinja bridge
//! ask a `Dialect` instead of writing it themselves.
//!
//! The trait's default methods are the SQL Postgres and Redshift share (both
//! take it from standard SQL). `PostgresDialect` implements the rest;
//! `RedshiftDialect` holds a `PostgresDialect` and delegates to it wherever
//! Redshift keeps Postgres's behaviour, the way sqlparser's Redshift dialect
//! delegates to its Postgres one, overriding only what differs.

use std::fmt;

use crate::sql;

/// What exists in the warehouse under a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelationKind {
    Table,
    View,
    MaterializedView,
}

impl RelationKind {
    /// The word DDL uses for it (`drop materialized view ...`).
    pub fn ddl_word(self) -> &'static str {
        match self {
            RelationKind::Table => "table",
            RelationKind::View => "view",
            RelationKind::MaterializedView => "materialized view",
        }
    }

    /// dbt's name for it (`relation.type`).
    pub fn dbt_name(self) -> &'static str {
        match self {
            RelationKind::Table => "table",
            RelationKind::View => "view",
            RelationKind::MaterializedView => "materialized_view",
        }
    }
}

/// A relation's database, schema and identifier, unquoted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelationId {
    pub database: String,
    pub schema: String,
    pub identifier: String,
}

impl RelationId {
    pub fn new(database: &str, schema: &str, identifier: &str) -> RelationId {
        RelationId {
            database: database.to_string(),
            schema: schema.to_string(),
            identifier: identifier.to_string(),
        }
    }

    /// The same schema, another identifier.
    pub fn sibling(&self, identifier: &str) -> RelationId {
        RelationId {
            identifier: identifier.to_string(),
            ..self.clone()
        }
    }
}

/// Options of a table created from a query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableOptions {
    /// Postgres: no WAL (faster, not crash-safe).
    pub unlogged: bool,
    /// Redshift's physical layout (empty elsewhere).
    pub layout: TableLayout,
}

/// How Redshift distributes a table's rows (`DISTSTYLE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DistStyle {
    All,
    Even,
    Auto,
    /// `DISTSTYLE KEY DISTKEY (column)`.
    Key(String),
}

/// A table's distribution, sort key and backup setting, and whether a view
/// binds to the relations it reads (dbt-redshift's `dist`, `sort`,
/// `sort_type`, `backup`, `bind`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableLayout {
    pub dist: Option<DistStyle>,
    pub sort: Vec<String>,
    pub interleaved: bool,
    pub backup: Option<bool>,
    pub late_binding: bool,
    /// Materialized views: `AUTO REFRESH YES|NO`.
    pub auto_refresh: Option<bool>,
}

/// One configured index (Postgres `indexes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub columns: Vec<String>,
    pub unique: bool,
    /// Access method (`btree`, `hash`, `gin`, ...).
    pub method: Option<String>,
}

/// A column constraint of an enforced contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConstraintKind {
    NotNull,
    Unique,
    PrimaryKey,
    Check,
    ForeignKey,
    Custom,
}

/// A contract column constraint, as written in YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub kind: ConstraintKind,
    pub name: Option<String>,
    pub expression: Option<String>,
}

/// Where the rows of a bulk load come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadSource {
    /// CSV streamed from the client over the connection (`COPY ... FROM STDIN`).
    ClientCsv,
    /// A headerless CSV object in S3, read by the server with an IAM role.
    S3Csv { url: String, iam_role: String },
    /// The objects a manifest in S3 lists, read by the server with an IAM
    /// role. Parquet maps columns by position: no column list.
    S3Manifest {
        url: String,
        iam_role: String,
        format: ObjectFormat,
        compression: ObjectCompression,
    },
}

/// How a server-side load reads its objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectFormat {
    Csv {
        delimiter: char,
        header_rows: u64,
    },
    /// One JSON object per line, fields matched to columns by name.
    JsonLines,
    Parquet,
}

/// How a server-side load decompresses its objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectCompression {
    None,
    Gzip,
    Zstd,
}

/// The types a seed column is inferred as, in agate's order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SeedType {
    Integer,
    Number,
    Date,
    DateTime,
    Boolean,
    Text,
}

/// How a warehouse spells the SQL Strata generates. See the module docs for
/// which methods have defaults and why.
/// The two statements that carry dependent views over a relation's
/// replacement (see [`Dialect::keep_dependent_views`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepDependents {
    /// Before the old relation loses its name.
    pub remember: String,
    /// After the new one holds it, before the old one is dropped.
    pub repoint: String,
}

pub trait Dialect: Send + Sync + fmt::Debug {
    /// The adapter type as dbt names it (`postgres`, `redshift`).
    fn name(&self) -> &'static str;

    // --- Names and literals -------------------------------------------------

    fn quote_ident(&self, s: &str) -> String {
        sql::quote_ident(s)
    }

    fn quote_literal(&self, s: &str) -> String {
        sql::quote_literal(s)
    }

    /// The longest identifier, in bytes; longer ones are truncated by the server.
    fn max_identifier_len(&self) -> usize;

    /// `"db"."schema"."name"`.
    fn relation(&self, r: &RelationId) -> String {
        format!(
            "{}.{}.{}",
            self.quote_ident(&r.database),
            self.quote_ident(&r.schema),
            self.quote_ident(&r.identifier)
        )
    }

    /// `base` with `suffix` appended, shortened so that the suffix survives the
    /// server's identifier limit (`__dbt_tmp` names of long models).
    fn suffixed(&self, base: &str, suffix: &str) -> String {
        let max = self.max_identifier_len().saturating_sub(suffix.len());
        let mut b = base.to_string();
        while b.len() > max {
            b.pop();
        }
        format!("{b}{suffix}")
    }

    // --- Expressions ----------------------------------------------------------

    /// Key columns `a` and `b` match, two NULLs included, in a form the
    /// planner can hash or merge join on: a snapshot or merge over many rows
    /// must not become a nested loop (`is not distinct from` does).
    fn key_eq(&self, a: &str, b: &str) -> String;

    /// `a <> b`, where NULL and a value differ and two NULLs do not.
    fn null_safe_ne(&self, a: &str, b: &str) -> String;

    /// The current time as a timestamp without time zone, fixed per transaction.
    fn current_timestamp(&self) -> String;

    /// The type of naive timestamps (`dbt_valid_from` and friends).
    fn timestamp_type(&self) -> &'static str {
        "timestamp without time zone"
    }

    /// The type text is cast to for hashing and comparing.
    fn string_type(&self) -> &'static str {
        "varchar"
    }

    /// `md5(expr)` as text.
    fn md5(&self, expr: &str) -> String {
        format!("md5({expr})")
    }

    /// The warehouse type a seed column of this inferred type gets.
    fn seed_type(&self, t: SeedType) -> String;

    /// A type a user declared for a column Strata creates (seed
    /// `column_types`), as the warehouse should get it.
    fn declared_type(&self, t: &str) -> String {
        t.to_string()
    }

    // --- Schemas and relations -----------------------------------------------

    fn create_schema(&self, schema: &str) -> String {
        format!("create schema if not exists {}", self.quote_ident(schema))
    }

    fn drop_schema(&self, schema: &str) -> String {
        format!("drop schema if exists {} cascade", self.quote_ident(schema))
    }

    /// Drops a relation (and what depends on it) if it exists.
    fn drop_relation(&self, kind: RelationKind, relation: &str) -> String {
        format!("drop {} if exists {relation} cascade", kind.ddl_word())
    }

    /// How the views built on `relation` survive its replacement (the old
    /// relation is renamed away and dropped with `cascade`, which would take
    /// them along), in the replacing transaction. `None` where the warehouse
    /// keeps them another way.
    fn keep_dependent_views(&self, _relation: &str) -> Option<KeepDependents> {
        None
    }

    /// `create or replace view`: a view replaced in place keeps the views
    /// built on it.
    fn replace_view(&self, relation: &str, sql: &str, options: &TableOptions) -> String {
        let _ = options;
        format!("create or replace view {relation} as (\n{sql}\n)")
    }

    /// Whether a materialized view can be renamed, so that a new one is
    /// built beside it and swapped in. Where not, it is dropped and created
    /// again in one transaction.
    fn renames_materialized_views(&self) -> bool {
        true
    }

    /// Whether REFRESH MATERIALIZED VIEW can run inside a transaction.
    fn refresh_is_transactional(&self) -> bool {
        true
    }

    /// A query returning one row (`t`/`f`) with a materialized view's
    /// current auto refresh setting, where the warehouse has one.
    fn auto_refresh_sql(&self, _schema: &str, _identifier: &str) -> Option<String> {
        None
    }

    /// The statement that turns a materialized view's auto refresh on or off.
    fn alter_auto_refresh(&self, _relation: &str, _on: bool) -> Option<String> {
        None
    }

    /// Whether replacing a view in place failed only because its columns
    /// changed shape, so that it must be swapped instead.
    fn view_change_needs_swap(&self, _e: &super::AdapterError) -> bool {
        false
    }

    /// Renames a relation within its schema; with `if_exists`, a missing one is no error.
    fn rename_relation(
        &self,
        kind: RelationKind,
        relation: &str,
        new_identifier: &str,
        if_exists: bool,
    ) -> String;

    /// `create view|table|materialized view <relation> as (<sql>)`.
    fn create_as(
        &self,
        kind: RelationKind,
        relation: &str,
        sql: &str,
        options: &TableOptions,
    ) -> String;

    /// `create table <relation> (<column definitions>)`.
    fn create_table(&self, relation: &str, columns: &[String], options: &TableOptions) -> String;

    /// One column definition of a contract's table, with its constraints.
    fn column_definition(&self, name: &str, data_type: &str, constraints: &[Constraint]) -> String {
        let mut def = format!("{} {data_type}", self.quote_ident(name));
        for c in constraints {
            if let Some(s) = self.constraint(c) {
                def.push(' ');
                def.push_str(&s);
            }
        }
        def
    }

    /// A column constraint, or `None` when the warehouse cannot express it.
    fn constraint(&self, c: &Constraint) -> Option<String>;

    fn refresh_materialized_view(&self, relation: &str) -> String {
        format!("refresh materialized view {relation}")
    }

    fn add_column(&self, relation: &str, column: &str, data_type: &str) -> String {
        format!(
            "alter table {relation} add column {} {data_type}",
            self.quote_ident(column)
        )
    }

    fn drop_column(&self, relation: &str, column: &str) -> String {
        format!(
            "alter table {relation} drop column {}",
            self.quote_ident(column)
        )
    }

    /// Statements changing a column's type in place, keeping its values.
    fn alter_column_type(&self, relation: &str, column: &str, data_type: &str) -> Vec<String>;

    /// Empties a table.
    fn truncate(&self, relation: &str) -> String {
        format!("truncate table {relation}")
    }

    /// Whether TRUNCATE rolls back with its transaction. Where it commits
    /// (Redshift), atomic plans delete all rows instead.
    fn truncate_is_transactional(&self) -> bool;

    /// Empties a table inside a transaction that must stay atomic.
    fn delete_all(&self, relation: &str) -> String {
        format!("delete from {relation}")
    }

    // --- Temporary relations ---------------------------------------------------

    /// Creates a session-private table from a query.
    fn create_temp_table_as(&self, name: &str, sql: &str) -> String {
        format!(
            "create temporary table {} as (\n{sql}\n)",
            self.quote_ident(name)
        )
    }

    /// Drops a session-private table if it exists (never a permanent one of that name).
    fn drop_temp_table(&self, name: &str) -> String;

    /// How later statements of the session refer to a temporary table.
    fn temp_table_ref(&self, name: &str) -> String {
        self.quote_ident(name)
    }

    // --- Concurrency -------------------------------------------------------------

    /// A statement that, inside a transaction, makes other transactions that run
    /// it for the same relation wait until this one ends.
    fn lock_for_update(&self, relation: &str) -> String;

    /// Whether [`Dialect::lock_for_update`] needs the relation to exist (a
    /// table lock). Before it does, two first runs cannot both succeed
    /// anyway: the second CREATE fails.
    fn lock_needs_relation(&self) -> bool {
        false
    }

    // --- Relation settings ----------------------------------------------------------

    fn supports_indexes(&self) -> bool;

    fn supports_unlogged(&self) -> bool;
    /// DISTSTYLE/DISTKEY/SORTKEY/BACKUP on tables and late-binding views.
    fn supports_table_layout(&self) -> bool {
        false
    }

    /// `create index` for one configured index; `None` without index support.
    fn create_index(&self, relation: &str, identifier: &str, index: &IndexSpec) -> Option<String>;

    fn grant(&self, privilege: &str, relation: &str, grantees: &[String]) -> String {
        let who: Vec<String> = grantees.iter().map(|g| self.quote_ident(g)).collect();
        format!("grant {privilege} on {relation} to {}", who.join(", "))
    }

    fn revoke(&self, privilege: &str, relation: &str, grantee: &str) -> String {
        format!(
            "revoke {privilege} on {relation} from {}",
            self.quote_ident(grantee)
        )
    }

    fn comment_on_relation(&self, kind: RelationKind, relation: &str, comment: &str) -> String {
        let word = match kind {
            RelationKind::View => "view",
            RelationKind::MaterializedView => "materialized view",
            _ => "table",
        };
        format!(
            "comment on {word} {relation} is {}",
            self.quote_literal(comment)
        )
    }

    fn comment_on_column(&self, relation: &str, column: &str, comment: &str) -> String {
        format!(
            "comment on column {relation}.{} is {}",
            self.quote_ident(column),
            self.quote_literal(comment)
        )
    }

    // --- Loading ------------------------------------------------------------------

    /// The statement that bulk-loads `columns` of `relation` from `source`.
    fn copy_from(&self, relation: &str, columns: &[String], source: &LoadSource) -> String;

    /// Whether bulk loads can stream rows from the client.
    fn copy_from_client(&self) -> bool;

    /// Rows of (file, line, column, message) explaining why a server-side
    /// load of the objects at `urls` failed, where the warehouse records them.
    fn load_errors_sql(&self, _urls: &[&str]) -> Option<String> {
        None
    }

    // --- Queries Strata wraps around compiled SQL ------------------------------------

    /// At most `limit` rows of `sql` (`strata show`).
    fn limit_rows(&self, sql: &str, limit: usize) -> String {
        format!("select * from (\n{sql}\n) as dbt_show_sbq\nlimit {limit}")
    }

    /// Source freshness: one row of `max_loaded_at` and `snapshotted_at` as
    /// text, and the age in seconds (or no third column, and the client
    /// subtracts), from a query returning `max_loaded_at`.
    fn freshness(&self, max_loaded_at_query: &str) -> String;

    /// A query returning the newest `loaded_at_field` of `relation`, for `freshness`.
    fn max_loaded_at(&self, field: &str, relation: &str, filter: Option<&str>) -> String;

    // --- Catalog: what exists, read as text rows by any transport ---------------------

    /// Statements a new session runs first.
    fn session_setup(&self) -> Vec<String> {
        Vec::new()
    }

    /// A name as the catalog stores it (Redshift folds identifiers to lower
    /// case, quoted or not, unless told otherwise).
    fn fold_identifier(&self, s: &str) -> String {
        s.to_string()
    }

    /// Rows of (schema, identifier, kind, granted): `kind` one of `table`,
    /// `view`, `materialized_view`; `granted` true when privileges on it are
    /// held by others than its owner.
    fn list_relations_sql(&self, schemas: &[String]) -> String;

    /// One row (kind) if something exists under the name.
    fn relation_type_sql(&self, schema: &str, identifier: &str) -> String;

    /// Rows of (name, data type with modifiers) in column order.
    fn columns_sql(&self, schema: &str, identifier: &str) -> String;

    /// Rows of (privilege in lower case, grantee) held by others than the
    /// current user.
    fn grants_sql(&self, schema: &str, identifier: &str) -> String;

    /// How to canonicalize type names (see [`CanonicalTypes`]).
    fn canonical_types(&self, types: &[&str]) -> CanonicalTypes;

    /// Rows of (oid, type name without modifiers) for result-column type oids.
    fn type_names_sql(&self, oids: &[u32]) -> String {
        let list: Vec<String> = oids.iter().map(u32::to_string).collect();
        format!(
            "select oid::int8, format_type(oid, null) from pg_catalog.pg_type where oid in ({})",
            if list.is_empty() {
                "0".to_string()
            } else {
                list.join(", ")
            }
        )
    }
}

/// Canonical type names: a query (one row per name, in order, NULL for a name
/// that is not a type) or, for a warehouse with a fixed set of types, the
/// answer itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanonicalTypes {
    Query(String),
    Known(Vec<Option<String>>),
}

/// `'a', 'b'` for an IN list; `NULL` for none, which matches nothing.
fn literal_list(d: &dyn Dialect, items: &[String]) -> String {
    if items.is_empty() {
        return "null".into();
    }
    items
        .iter()
        .map(|s| d.quote_literal(s))
        .collect::<Vec<_>>()
        .join(", ")
}

/// PostgreSQL.
#[derive(Debug, Clone, Copy, Default)]
pub struct PostgresDialect;

impl Dialect for PostgresDialect {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn max_identifier_len(&self) -> usize {
        63
    }

    fn keep_dependent_views(&self, relation: &str) -> Option<KeepDependents> {
        // Server side, so nothing is read back: the views and materialized
        // views built directly on the relation, with their definitions taken
        // while it still holds the name, and only pg_catalog on the search
        // path, so every name in them is qualified.
        let remember = format!(
            r#"do $strata$
declare sp text := current_setting('search_path');
begin
  perform set_config('search_path', 'pg_catalog', true);
  drop table if exists pg_temp.strata_dependents;
  create temp table strata_dependents on commit drop as
  select distinct c.oid, c.relkind, n.nspname, c.relname, pg_get_viewdef(c.oid) as definition,
         c.reloptions, c.relacl, c.relowner, obj_description(c.oid, 'pg_class') as comment
  from pg_depend d
  join pg_rewrite r on r.oid = d.objid
  join pg_class c on c.oid = r.ev_class
  join pg_namespace n on n.oid = c.relnamespace
  where d.refclassid = 'pg_class'::regclass and d.refobjid = to_regclass({rel})
    and d.classid = 'pg_rewrite'::regclass and r.ev_class <> d.refobjid;
  perform set_config('search_path', sp, true);
end $strata$"#,
            rel = self.quote_literal(relation)
        );
        // Once the new relation holds the name: a view is pointed at it in
        // place (`create or replace` keeps its identity, grants, comment and
        // the views built on it); a materialized view, or a view whose column
        // types changed, is built again with its options, comment and grants.
        // Each in its own subtransaction: one that no longer fits (a column it
        // reads is gone) is left to `drop ... cascade`, with a warning, as
        // without this.
        let repoint = r#"do $strata$
declare r record; g record; opts text;
begin
  for r in select * from pg_temp.strata_dependents loop
    opts := coalesce(' with (' || array_to_string(r.reloptions, ', ') || ')', '');
    begin
      if r.relkind = 'v' then
        begin
          execute format('create or replace view %I.%I%s as %s', r.nspname, r.relname, opts, r.definition);
          continue;
        exception when others then
          -- Its columns changed type: built again below (the views on it go).
          null;
        end;
      end if;
      execute format('drop %s %I.%I cascade',
        case r.relkind when 'm' then 'materialized view' else 'view' end, r.nspname, r.relname);
      execute format('create %s %I.%I%s as %s',
        case r.relkind when 'm' then 'materialized view' else 'view' end, r.nspname, r.relname, opts, r.definition);
      if r.comment is not null then
        execute format('comment on %s %I.%I is %L',
          case r.relkind when 'm' then 'materialized view' else 'view' end, r.nspname, r.relname, r.comment);
      end if;
      for g in select * from aclexplode(r.relacl) where grantee <> r.relowner loop
        execute format('grant %s on %I.%I to %s', g.privilege_type, r.nspname, r.relname,
          case g.grantee when 0 then 'public' else quote_ident(pg_get_userbyid(g.grantee)) end);
      end loop;
    exception when others then
      raise warning 'view %.% depends on the replaced relation and no longer fits it: %',
        r.nspname, r.relname, sqlerrm;
    end;
  end loop;
  drop table pg_temp.strata_dependents;
end $strata$"#
            .to_string();
        Some(KeepDependents { remember, repoint })
    }

    fn view_change_needs_swap(&self, e: &super::AdapterError) -> bool {
        // invalid_table_definition: a column removed, renamed or retyped.
        e.sqlstate.as_deref() == Some("42P16")
    }

    fn key_eq(&self, a: &str, b: &str) -> String {
        // Array equality treats NULL elements as equal, uses the element
        // type's own `=` (1.0 matches 1.00), and is hashable and sortable.
        format!("array[{a}] = array[{b}]")
    }

    fn null_safe_ne(&self, a: &str, b: &str) -> String {
        format!("{a} is distinct from {b}")
    }

    fn current_timestamp(&self) -> String {
        "now()::timestamp without time zone".into()
    }

    fn seed_type(&self, t: SeedType) -> String {
        match t {
            SeedType::Integer => "integer",
            SeedType::Number => "numeric",
            SeedType::Date => "date",
            SeedType::DateTime => "timestamp without time zone",
            SeedType::Boolean => "boolean",
            SeedType::Text => "text",
        }
        .into()
    }

    fn rename_relation(
        &self,
        kind: RelationKind,
        relation: &str,
        new_identifier: &str,
        if_exists: bool,
    ) -> String {
        format!(
            "alter {}{} {relation} rename to {}",
            kind.ddl_word(),
            if if_exists { " if exists" } else { "" },
            self.quote_ident(new_identifier)
        )
    }

    fn create_as(
        &self,
        kind: RelationKind,
        relation: &str,
        sql: &str,
        options: &TableOptions,
    ) -> String {
        let unlogged = if kind == RelationKind::Table && options.unlogged {
            "unlogged "
        } else {
            ""
        };
        format!(
            "create {unlogged}{} {relation} as (\n{sql}\n)",
            kind.ddl_word()
        )
    }

    fn create_table(&self, relation: &str, columns: &[String], options: &TableOptions) -> String {
        format!(
            "create {}table {relation} (\n    {}\n)",
            if options.unlogged { "unlogged " } else { "" },
            columns.join(",\n    ")
        )
    }

    fn constraint(&self, c: &Constraint) -> Option<String> {
        let name = c
            .name
            .as_ref()
            .map(|n| format!("constraint {} ", self.quote_ident(n)))
            .unwrap_or_default();
        let expr = c.expression.as_deref();
        Some(match c.kind {
            ConstraintKind::NotNull => "not null".into(),
            ConstraintKind::Unique => format!("{name}unique"),
            ConstraintKind::PrimaryKey => format!("{name}primary key"),
            ConstraintKind::Check => format!("{name}check ({})", expr?),
            ConstraintKind::ForeignKey => format!("{name}references {}", expr?),
            ConstraintKind::Custom => expr?.to_string(),
        })
    }

    fn alter_column_type(&self, relation: &str, column: &str, data_type: &str) -> Vec<String> {
        let q = self.quote_ident(column);
        vec![format!(
            "alter table {relation} alter column {q} type {data_type} using {q}::{data_type}"
        )]
    }

    fn truncate_is_transactional(&self) -> bool {
        true
    }

    fn drop_temp_table(&self, name: &str) -> String {
        // pg_temp: a permanent table of the same name on the search path is never touched.
        format!("drop table if exists pg_temp.{}", self.quote_ident(name))
    }

    fn lock_for_update(&self, relation: &str) -> String {
        // A transaction-scoped advisory lock keyed by the relation's name: it
        // serializes runs even before the relation exists.
        format!(
            "select pg_advisory_xact_lock(hashtext({}))",
            self.quote_literal(relation)
        )
    }

    fn supports_indexes(&self) -> bool {
        true
    }

    fn supports_unlogged(&self) -> bool {
        true
    }

    fn create_index(&self, relation: &str, identifier: &str, index: &IndexSpec) -> Option<String> {
        // A stable name from the index's definition, so reruns find it again.
        let mut h: u32 = 2166136261;
        for b in format!("{identifier}{}{}", index.columns.join(","), index.unique).bytes() {
            h = (h ^ b as u32).wrapping_mul(16777619);
        }
        let name = format!(
            "{}_idx_{h:08x}",
            identifier.chars().take(40).collect::<String>()
        );
        Some(format!(
            "create {}index if not exists {} on {relation} {}({})",
            if index.unique { "unique " } else { "" },
            self.quote_ident(&name),
            index
                .method
                .as_deref()
                .map(|m| format!("using {m} "))
                .unwrap_or_default(),
            index.columns.join(", ")
        ))
    }

    fn copy_from(&self, relation: &str, columns: &[String], source: &LoadSource) -> String {
        // Postgres always streams from the client: the engine stages seeds in
        // S3 only where the dialect cannot (`copy_from_client` false).
        let _ = source;
        format!(
            "copy {relation} ({}) from stdin with (format csv)",
            columns.join(", ")
        )
    }

    fn copy_from_client(&self) -> bool {
        true
    }

    fn freshness(&self, max_loaded_at_query: &str) -> String {
        format!(
            "select max_loaded_at::text, snapshotted_at::text, \
             extract(epoch from snapshotted_at - max_loaded_at)::float8 \
             from (select ({max_loaded_at_query}) as max_loaded_at, now() as snapshotted_at) f"
        )
    }

    fn max_loaded_at(&self, field: &str, relation: &str, filter: Option<&str>) -> String {
        format!(
            "select max({field})::timestamptz from {relation}{}",
            filter.map(|f| format!(" where {f}")).unwrap_or_default()
        )
    }

    fn session_setup(&self) -> Vec<String> {
        // After a kill -9 of Strata its statements stop, and their locks go,
        // within this many milliseconds instead of running on (PostgreSQL 14+;
        // an older server skips it).
        vec![format!(
            "select set_config('client_connection_check_interval', '{PG_CLIENT_CHECK_MS}', false) \
             where current_setting('server_version_num')::int >= 140000"
        )]
    }

    fn list_relations_sql(&self, schemas: &[String]) -> String {
        format!(
            "select n.nspname::text, c.relname::text, \
             case c.relkind when 'v' then 'view' when 'm' then 'materialized_view' else 'table' end, \
             exists (select 1 from aclexplode(c.relacl) a where a.grantee <> c.relowner) \
             from pg_catalog.pg_class c \
             join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             where n.nspname in ({}) and c.relkind in ('r', 'v', 'm', 'p')",
            literal_list(self, schemas)
        )
    }

    fn relation_type_sql(&self, schema: &str, identifier: &str) -> String {
        format!(
            "select case c.relkind when 'v' then 'view' when 'm' then 'materialized_view' else 'table' end \
             from pg_catalog.pg_class c \
             join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = {} and c.relname = {} and c.relkind in ('r', 'v', 'm', 'p')",
            self.quote_literal(schema),
            self.quote_literal(identifier)
        )
    }

    fn columns_sql(&self, schema: &str, identifier: &str) -> String {
        format!(
            "select a.attname::text, format_type(a.atttypid, a.atttypmod) \
             from pg_catalog.pg_attribute a \
             join pg_catalog.pg_class c on c.oid = a.attrelid \
             join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = {} and c.relname = {} and a.attnum > 0 and not a.attisdropped \
             order by a.attnum",
            self.quote_literal(schema),
            self.quote_literal(identifier)
        )
    }

    fn grants_sql(&self, schema: &str, identifier: &str) -> String {
        format!(
            "select lower(privilege_type)::text, grantee::text \
             from information_schema.role_table_grants \
             where table_schema = {} and table_name = {} and grantee <> current_user",
            self.quote_literal(schema),
            self.quote_literal(identifier)
        )
    }

    fn canonical_types(&self, types: &[&str]) -> CanonicalTypes {
        // to_regtype gives NULL for a name that is no type, instead of failing all.
        let list: Vec<String> = types.iter().map(|t| t.to_string()).collect();
        CanonicalTypes::Query(format!(
            "select format_type(to_regtype(t), null) \
             from unnest(array[{}]::text[]) with ordinality as u(t, i) order by i",
            literal_list(self, &list)
        ))
    }
}

/// How often a Postgres backend checks, while running a statement, that its
/// client is still there.
const PG_CLIENT_CHECK_MS: u32 = 2000;

/// Amazon Redshift: a Postgres 8.0 descendant. Only what differs from Postgres
/// is written here; the rest delegates to `PostgresDialect`. Its transports
/// arrive with the Redshift adapter; this dialect is already used to plan and
/// snapshot-test materializations for it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedshiftDialect {
    pg: PostgresDialect,
    /// `enable_case_sensitive_identifier`: quoted names keep their case.
    case_sensitive: bool,
}

impl RedshiftDialect {
    /// A cluster whose sessions set `enable_case_sensitive_identifier`.
    pub fn case_sensitive() -> RedshiftDialect {
        RedshiftDialect {
            pg: PostgresDialect,
            case_sensitive: true,
        }
    }

    /// ` backup no diststyle key distkey ("c") sortkey ("a", "b")`:
    /// the table attributes of CREATE TABLE and CREATE TABLE AS, in the order
    /// the AWS docs give them (CREATE TABLE AS: BACKUP, DISTSTYLE, DISTKEY,
    /// SORTKEY).
    fn layout_clauses(&self, l: &TableLayout) -> String {
        let mut out = String::new();
        if let Some(b) = l.backup {
            out.push_str(if b { " backup yes" } else { " backup no" });
        }
        match &l.dist {
            Some(DistStyle::All) => out.push_str(" diststyle all"),
            Some(DistStyle::Even) => out.push_str(" diststyle even"),
            Some(DistStyle::Auto) => out.push_str(" diststyle auto"),
            Some(DistStyle::Key(c)) => {
                out.push_str(&format!(" diststyle key distkey ({})", self.quote_ident(c)))
            }
            None => {}
        }
        if !l.sort.is_empty() {
            let cols: Vec<String> = l.sort.iter().map(|c| self.quote_ident(c)).collect();
            // COMPOUND is Redshift's default, so only INTERLEAVED is written.
            out.push_str(&format!(
                " {}sortkey ({})",
                if l.interleaved { "interleaved " } else { "" },
                cols.join(", ")
            ));
        }
        out
    }
}

impl Dialect for RedshiftDialect {
    fn name(&self) -> &'static str {
        "redshift"
    }

    fn max_identifier_len(&self) -> usize {
        127
    }

    fn key_eq(&self, a: &str, b: &str) -> String {
        // Redshift has no IS NOT DISTINCT FROM and no array constructor.
        // TODO(#10): check this plan on Redshift (the OR may prevent a hash join).
        format!("({a} = {b} or ({a} is null and {b} is null))")
    }

    fn null_safe_ne(&self, a: &str, b: &str) -> String {
        format!("not ({a} = {b} or ({a} is null and {b} is null))")
    }

    fn current_timestamp(&self) -> String {
        // As dbt-redshift: GETDATE is a compute-node function; CURRENT_TIMESTAMP
        // and NOW run on the leader node only
        // (https://docs.aws.amazon.com/redshift/latest/dg/r_GETDATE.html).
        "getdate()".into()
    }

    fn seed_type(&self, t: SeedType) -> String {
        match t {
            // Redshift's `text` is varchar(256); seed values may be longer.
            SeedType::Text => "varchar(65535)".into(),
            other => self.pg.seed_type(other),
        }
    }

    fn declared_type(&self, t: &str) -> String {
        // TEXT is VARCHAR(256) on Redshift, which would truncate what
        // Postgres keeps whole: it gets the widest varchar instead
        // (https://docs.aws.amazon.com/redshift/latest/dg/r_Character_types.html).
        if t.trim().eq_ignore_ascii_case("text") {
            "varchar(65535)".into()
        } else {
            t.to_string()
        }
    }

    fn rename_relation(
        &self,
        kind: RelationKind,
        relation: &str,
        new_identifier: &str,
        _if_exists: bool,
    ) -> String {
        // Redshift's ALTER has no IF EXISTS; plans only rename what exists
        // there. Views are renamed with ALTER TABLE too, as dbt-redshift does
        // (Redshift's ALTER VIEW cannot rename).
        let _ = kind;
        format!(
            "alter table {relation} rename to {}",
            self.quote_ident(new_identifier)
        )
    }

    fn create_as(
        &self,
        kind: RelationKind,
        relation: &str,
        sql: &str,
        options: &TableOptions,
    ) -> String {
        match kind {
            // A late-binding view reads its relations by name at query time,
            // so rebuilding them does not need the view dropped (AWS docs,
            // CREATE VIEW: WITH NO SCHEMA BINDING).
            RelationKind::View => format!(
                "create view {relation} as (\n{sql}\n){}",
                if options.layout.late_binding {
                    " with no schema binding"
                } else {
                    ""
                }
            ),
            // CREATE MATERIALIZED VIEW mv [BACKUP] [table attributes]
            // [AUTO REFRESH] AS query
            // (https://docs.aws.amazon.com/redshift/latest/dg/materialized-view-create-sql-command.html).
            RelationKind::MaterializedView => format!(
                "create materialized view {relation}{}{} as (\n{sql}\n)",
                self.layout_clauses(&options.layout),
                match options.layout.auto_refresh {
                    Some(true) => " auto refresh yes",
                    Some(false) => " auto refresh no",
                    None => "",
                }
            ),
            _ => format!(
                "create {} {relation}{} as (\n{sql}\n)",
                kind.ddl_word(),
                self.layout_clauses(&options.layout)
            ),
        }
    }

    fn create_table(&self, relation: &str, columns: &[String], options: &TableOptions) -> String {
        format!(
            "create table {relation} (\n    {}\n){}",
            columns.join(",\n    "),
            self.layout_clauses(&options.layout)
        )
    }

    fn supports_table_layout(&self) -> bool {
        true
    }

    fn constraint(&self, c: &Constraint) -> Option<String> {
        match c.kind {
            // Redshift accepts neither check constraints nor custom expressions.
            ConstraintKind::Check | ConstraintKind::Custom => None,
            _ => self.pg.constraint(c),
        }
    }

    fn alter_column_type(&self, relation: &str, column: &str, data_type: &str) -> Vec<String> {
        // Redshift changes types in place only for varchar lengths: add a new
        // column, copy, drop the old one and rename.
        let tmp = self.quote_ident(&self.suffixed(column, "__dbt_alter"));
        let q = self.quote_ident(column);
        vec![
            format!("alter table {relation} add column {tmp} {data_type}"),
            format!("update {relation} set {tmp} = cast({q} as {data_type})"),
            format!("alter table {relation} drop column {q} cascade"),
            format!("alter table {relation} rename column {tmp} to {q}"),
        ]
    }

    fn truncate_is_transactional(&self) -> bool {
        // TRUNCATE commits the transaction it runs in (AWS docs, TRUNCATE).
        false
    }

    fn drop_temp_table(&self, name: &str) -> String {
        format!("drop table if exists {}", self.quote_ident(name))
    }

    fn lock_for_update(&self, relation: &str) -> String {
        // No advisory locks on Redshift: an exclusive table lock, held to
        // the end of the transaction
        // (https://docs.aws.amazon.com/redshift/latest/dg/r_LOCK.html).
        format!("lock table {relation}")
    }

    fn lock_needs_relation(&self) -> bool {
        true
    }

    fn comment_on_relation(&self, kind: RelationKind, relation: &str, comment: &str) -> String {
        // COMMENT ON has no MATERIALIZED VIEW on Redshift: a materialized
        // view takes VIEW (https://docs.aws.amazon.com/redshift/latest/dg/r_COMMENT.html).
        let kind = match kind {
            RelationKind::MaterializedView => RelationKind::View,
            k => k,
        };
        self.pg.comment_on_relation(kind, relation, comment)
    }

    fn replace_view(&self, relation: &str, sql: &str, options: &TableOptions) -> String {
        format!(
            "create or replace view {relation} as (\n{sql}\n){}",
            if options.layout.late_binding {
                " with no schema binding"
            } else {
                ""
            }
        )
    }

    fn renames_materialized_views(&self) -> bool {
        // ALTER MATERIALIZED VIEW changes auto refresh, distribution and sort
        // keys only; dbt-redshift drops and creates instead
        // (https://docs.aws.amazon.com/redshift/latest/dg/r_ALTER_MATERIALIZED_VIEW.html).
        false
    }

    fn refresh_is_transactional(&self) -> bool {
        // "REFRESH MATERIALIZED VIEW runs as a transaction of its own"
        // (https://docs.aws.amazon.com/redshift/latest/dg/materialized-view-refresh-sql-command.html).
        false
    }

    fn auto_refresh_sql(&self, schema: &str, identifier: &str) -> Option<String> {
        // https://docs.aws.amazon.com/redshift/latest/dg/r_SVV_MV_INFO.html
        // documents autorefresh as t/f, and its sample output shows 1/0.
        Some(format!(
            "select case when trim(autorefresh::varchar) in ('t', '1', 'true') then 't' else 'f' end \
             from svv_mv_info where database_name = current_database() \
             and trim(schema_name) = {} and trim(name) = {}",
            self.quote_literal(&self.fold_identifier(schema)),
            self.quote_literal(&self.fold_identifier(identifier))
        ))
    }

    fn alter_auto_refresh(&self, relation: &str, on: bool) -> Option<String> {
        Some(format!(
            "alter materialized view {relation} auto refresh {}",
            if on { "yes" } else { "no" }
        ))
    }

    fn supports_indexes(&self) -> bool {
        false
    }

    fn supports_unlogged(&self) -> bool {
        false
    }

    fn create_index(&self, _r: &str, _i: &str, _index: &IndexSpec) -> Option<String> {
        None
    }

    fn copy_from(&self, relation: &str, columns: &[String], source: &LoadSource) -> String {
        match source {
            // Empty fields are NULL, as in Postgres's CSV COPY; dates and
            // times in any format Redshift recognizes
            // (https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-data-conversion.html).
            LoadSource::S3Csv { url, iam_role } => format!(
                "copy {relation} ({}) from {} iam_role {} format as csv emptyasnull dateformat 'auto' timeformat 'auto'",
                columns.join(", "),
                self.quote_literal(url),
                self.quote_literal(iam_role)
            ),
            // The manifest lists exactly the files to load
            // (https://docs.aws.amazon.com/redshift/latest/dg/loading-data-files-using-manifest.html);
            // Parquet takes no column list and maps by position
            // (https://docs.aws.amazon.com/redshift/latest/dg/copy-usage_notes-copy-from-columnar.html).
            LoadSource::S3Manifest {
                url,
                iam_role,
                format,
                compression,
            } => {
                let head = match format {
                    ObjectFormat::Parquet => format!("copy {relation}"),
                    _ => format!("copy {relation} ({})", columns.join(", ")),
                };
                let from = format!(
                    "{head} from {} iam_role {} manifest",
                    self.quote_literal(url),
                    self.quote_literal(iam_role)
                );
                let zip = match compression {
                    ObjectCompression::None => "",
                    ObjectCompression::Gzip => " gzip",
                    ObjectCompression::Zstd => " zstd",
                };
                match format {
                    ObjectFormat::Parquet => format!("{from} format as parquet"),
                    ObjectFormat::Csv {
                        delimiter,
                        header_rows,
                    } => format!(
                        "{from} format as csv delimiter {}{}{zip} emptyasnull dateformat 'auto' timeformat 'auto'",
                        self.quote_literal(&delimiter.to_string()),
                        if *header_rows > 0 {
                            format!(" ignoreheader {header_rows}")
                        } else {
                            String::new()
                        }
                    ),
                    ObjectFormat::JsonLines => format!(
                        "{from} format as json 'auto ignorecase'{zip} dateformat 'auto' timeformat 'auto'"
                    ),
                }
            }
            LoadSource::ClientCsv => self.pg.copy_from(relation, columns, source),
        }
    }

    fn copy_from_client(&self) -> bool {
        false
    }

    fn load_errors_sql(&self, urls: &[&str]) -> Option<String> {
        // COPY's own error only says to look here; SYS_LOAD_ERROR_DETAIL has
        // the file, line and column, on provisioned clusters and Serverless
        // alike (https://docs.aws.amazon.com/redshift/latest/dg/SYS_LOAD_ERROR_DETAIL.html).
        let list: Vec<String> = urls.iter().map(|u| self.quote_literal(u)).collect();
        Some(format!(
            "select trim(file_name)::varchar, line_number::varchar, trim(column_name)::varchar, trim(error_message)::varchar \
             from sys_load_error_detail where trim(file_name) in ({}) \
             order by start_time desc limit 5",
            list.join(", ")
        ))
    }

    fn freshness(&self, max_loaded_at_query: &str) -> String {
        // Two timestamps; the age is computed by the client, since Redshift's
        // DATEDIFF takes a bare date part no other dialect parses.
        format!(
            "select max_loaded_at::varchar, snapshotted_at::varchar \
             from (select ({max_loaded_at_query}) as max_loaded_at, getdate() as snapshotted_at) f"
        )
    }

    fn max_loaded_at(&self, field: &str, relation: &str, filter: Option<&str>) -> String {
        format!(
            "select max({field})::timestamp from {relation}{}",
            filter.map(|f| format!(" where {f}")).unwrap_or_default()
        )
    }

    fn fold_identifier(&self, s: &str) -> String {
        // Names are case-insensitive and stored in lower case, delimited or
        // not, unless enable_case_sensitive_identifier is on
        // (https://docs.aws.amazon.com/redshift/latest/dg/r_names.html).
        if self.case_sensitive {
            s.to_string()
        } else {
            s.to_lowercase()
        }
    }

    fn session_setup(&self) -> Vec<String> {
        // https://docs.aws.amazon.com/redshift/latest/dg/r_enable_case_sensitive_identifier.html
        if self.case_sensitive {
            vec!["set enable_case_sensitive_identifier to true".into()]
        } else {
            Vec::new()
        }
    }

    fn list_relations_sql(&self, schemas: &[String]) -> String {
        let schemas: Vec<String> = schemas.iter().map(|s| self.fold_identifier(s)).collect();
        self.relations_where(&format!("in ({})", literal_list(self, &schemas)), None)
    }

    fn relation_type_sql(&self, schema: &str, identifier: &str) -> String {
        let schema = self.quote_literal(&self.fold_identifier(schema));
        let name = self.quote_literal(&self.fold_identifier(identifier));
        format!(
            "select kind from ({}) r",
            self.relations_where(&format!("= {schema}"), Some(&name))
        )
    }

    fn columns_sql(&self, schema: &str, identifier: &str) -> String {
        // SVV_COLUMNS covers late-binding views, whose columns the Postgres
        // catalog does not know until they are queried
        // (https://docs.aws.amazon.com/redshift/latest/dg/r_SVV_COLUMNS.html).
        format!(
            "select column_name::varchar, \
             case when character_maximum_length is not null \
                  then data_type || '(' || character_maximum_length::varchar || ')' \
                  when data_type = 'numeric' and numeric_precision is not null \
                  then 'numeric(' || numeric_precision::varchar || ',' || coalesce(numeric_scale, 0)::varchar || ')' \
                  else data_type end::varchar \
             from svv_columns \
             where table_catalog = current_database() and table_schema = {} and table_name = {} \
             order by ordinal_position",
            self.quote_literal(&self.fold_identifier(schema)),
            self.quote_literal(&self.fold_identifier(identifier))
        )
    }

    fn grants_sql(&self, schema: &str, identifier: &str) -> String {
        // https://docs.aws.amazon.com/redshift/latest/dg/r_SVV_RELATION_PRIVILEGES.html
        format!(
            "select lower(privilege_type)::varchar, identity_name::varchar \
             from svv_relation_privileges \
             where namespace_name = {} and relation_name = {} and identity_name <> current_user",
            self.quote_literal(&self.fold_identifier(schema)),
            self.quote_literal(&self.fold_identifier(identifier))
        )
    }

    fn canonical_types(&self, types: &[&str]) -> CanonicalTypes {
        // Redshift has a fixed set of types and no to_regtype
        // (https://docs.aws.amazon.com/redshift/latest/dg/c_Supported_data_types.html).
        CanonicalTypes::Known(types.iter().map(|t| redshift_type(t)).collect())
    }
}

impl RedshiftDialect {
    /// Tables and views (SVV_TABLES) and materialized views (SVV_MV_INFO) in
    /// the schemas matching `schema_cond`, with whether anyone but the current
    /// user holds privileges on them (SVV_RELATION_PRIVILEGES). Joins, not
    /// correlated subqueries: Redshift rejects most of those.
    /// https://docs.aws.amazon.com/redshift/latest/dg/r_SVV_TABLES.html
    /// https://docs.aws.amazon.com/redshift/latest/dg/r_SVV_MV_INFO.html
    fn relations_where(&self, schema_cond: &str, name: Option<&str>) -> String {
        let (t_name, mv_name) = match name {
            Some(n) => (format!(" and table_name = {n}"), format!(" and name = {n}")),
            None => (String::new(), String::new()),
        };
        format!(
            "select r.schema_name, r.name, r.kind, g.relation_name is not null as granted from (\
             select table_schema::varchar as schema_name, table_name::varchar as name, \
             case table_type when 'VIEW' then 'view' else 'table' end::varchar as kind \
             from svv_tables where table_catalog = current_database() \
             and table_type in ('BASE TABLE', 'VIEW') and table_schema {schema_cond}{t_name} \
             union all \
             select schema_name::varchar, name::varchar, 'materialized_view'::varchar \
             from svv_mv_info where database_name = current_database() and schema_name {schema_cond}{mv_name}\
             ) r left join (\
             select distinct namespace_name, relation_name from svv_relation_privileges \
             where identity_name <> current_user\
             ) g on g.namespace_name = r.schema_name and g.relation_name = r.name"
        )
    }
}

/// A Redshift type name as its catalog writes it, without modifiers; `None`
/// for a name Redshift does not have.
pub(crate) fn redshift_type(t: &str) -> Option<String> {
    let base = t.split('(').next().unwrap_or(t).trim().to_lowercase();
    let base = base.split_whitespace().collect::<Vec<_>>().join(" ");
    let canonical = match base.as_str() {
        "smallint" | "int2" => "smallint",
        "integer" | "int" | "int4" => "integer",
        "bigint" | "int8" => "bigint",
        "decimal" | "numeric" => "numeric",
        "real" | "float4" => "real",
        "double precision" | "float8" | "float" => "double precision",
        "boolean" | "bool" => "boolean",
        "char" | "character" | "nchar" | "bpchar" => "character",
        "varchar" | "character varying" | "nvarchar" | "text" => "character varying",
        "date" => "date",
        "timestamp" | "timestamp without time zone" => "timestamp without time zone",
        "timestamptz" | "timestamp with time zone" => "timestamp with time zone",
        "time" | "time without time zone" => "time without time zone",
        "timetz" | "time with time zone" => "time with time zone",
        "varbyte" | "varbinary" | "binary varying" => "varbyte",
        "super" => "super",
        "geometry" => "geometry",
        "geography" => "geography",
        "hllsketch" => "hllsketch",
        "interval" => "interval",
        _ => return None,
    };
    Some(canonical.to_string())
}

/// Every dialect Strata has, for tests that check each of them.
pub fn all() -> Vec<&'static dyn Dialect> {
    vec![
        &PostgresDialect,
        &RedshiftDialect {
            pg: PostgresDialect,
            case_sensitive: false,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_survive_the_identifier_limit() {
        let long = "x".repeat(200);
        for d in all() {
            let s = d.suffixed(&long, "__dbt_tmp");
            assert_eq!(s.len(), d.max_identifier_len(), "{}", d.name());
            assert!(s.ends_with("__dbt_tmp"));
        }
    }

    #[test]
    fn redshift_delegates_what_it_shares() {
        let (pg, rs) = (PostgresDialect, RedshiftDialect::default());
        assert_eq!(rs.create_schema("a"), pg.create_schema("a"));
        assert_eq!(
            rs.seed_type(SeedType::Integer),
            pg.seed_type(SeedType::Integer)
        );
        assert_ne!(rs.seed_type(SeedType::Text), pg.seed_type(SeedType::Text));
        assert!(!rs.truncate_is_transactional() && pg.truncate_is_transactional());
    }

    #[test]
    fn redshift_names_and_types() {
        let rs = RedshiftDialect::default();
        assert_eq!(rs.fold_identifier("Daily_KPIs"), "daily_kpis");
        assert_eq!(PostgresDialect.fold_identifier("Daily_KPIs"), "Daily_KPIs");
        let cs = RedshiftDialect::case_sensitive();
        assert_eq!(cs.fold_identifier("Daily_KPIs"), "Daily_KPIs");
        assert_eq!(
            cs.session_setup(),
            vec!["set enable_case_sensitive_identifier to true"]
        );
        assert!(rs.session_setup().is_empty());
        assert_eq!(rs.declared_type("TEXT"), "varchar(65535)");
        assert_eq!(rs.declared_type("varchar(20)"), "varchar(20)");
        assert_eq!(
            rs.canonical_types(&["int", "varchar(20)", "timestamptz", "float", "nonsense"]),
            CanonicalTypes::Known(vec![
                Some("integer".into()),
                Some("character varying".into()),
                Some("timestamp with time zone".into()),
                Some("double precision".into()),
                None,
            ])
        );
        // Catalog queries read the Redshift system views with folded names.
        let sql = rs.columns_sql("Core", "Dim");
        assert!(
            sql.contains("svv_columns") && sql.contains("'core'") && sql.contains("'dim'"),
            "{sql}"
        );
        // Every catalog and freshness query Strata sends to Redshift is SQL
        // its grammar has.
        for sql in [
            rs.list_relations_sql(&["core".into(), "staging".into()]),
            rs.relation_type_sql("core", "dim"),
            rs.columns_sql("core", "dim"),
            rs.grants_sql("core", "dim"),
            rs.auto_refresh_sql("core", "mv").unwrap_or_default(),
            rs.load_errors_sql(&["s3://b/k.csv"]).unwrap_or_default(),
            rs.type_names_sql(&[23, 1043]),
            rs.freshness(&rs.max_loaded_at("loaded_at", "\"db\".\"raw\".\"t\"", Some("x > 1"))),
        ] {
            sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::RedshiftSqlDialect {}, &sql)
                .unwrap_or_else(|e| panic!("{e}: {sql}"));
        }
    }
}
