//! The `Relation` value that `ref`, `source`, `this` and `api.Relation.create` return.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use minijinja::value::{from_args, Kwargs, Object, ObjectRepr, Value};
use minijinja::{Error, ErrorKind, State};

use crate::sql::quote_ident;

/// Which parts of a relation name are quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotePolicy {
    pub database: bool,
    pub schema: bool,
    pub identifier: bool,
}

impl Default for QuotePolicy {
    fn default() -> Self {
        QuotePolicy {
            database: true,
            schema: true,
            identifier: true,
        }
    }
}

/// A fully resolved relation name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationName {
    pub database: Option<String>,
    pub schema: Option<String>,
    pub identifier: Option<String>,
    pub quote: QuotePolicy,
    /// Parts left out of the rendered name (`include(database=false)`).
    pub include: QuotePolicy,
    /// `table`, `view`, `cte`, `materialized_view` … when known.
    pub kind: Option<String>,
}

impl RelationName {
    pub fn new(database: &str, schema: &str, identifier: &str, quote: QuotePolicy) -> Self {
        RelationName {
            database: Some(database.to_string()),
            schema: Some(schema.to_string()),
            identifier: Some(identifier.to_string()),
            quote,
            include: QuotePolicy::default(),
            kind: None,
        }
    }

    /// An ephemeral model's CTE name, rendered bare.
    pub fn cte(name: &str) -> Self {
        RelationName {
            database: None,
            schema: None,
            identifier: Some(format!("__dbt__cte__{name}")),
            quote: QuotePolicy {
                database: false,
                schema: false,
                identifier: false,
            },
            include: QuotePolicy::default(),
            kind: Some("cte".into()),
        }
    }

    pub fn render(&self) -> String {
        let mut parts = Vec::with_capacity(3);
        let mut push = |v: &Option<String>, inc: bool, q: bool| {
            if let (Some(v), true) = (v, inc) {
                parts.push(if q { quote_ident(v) } else { v.clone() });
            }
        };
        push(&self.database, self.include.database, self.quote.database);
        push(&self.schema, self.include.schema, self.quote.schema);
        push(
            &self.identifier,
            self.include.identifier,
            self.quote.identifier,
        );
        parts.join(".")
    }
}

/// The Jinja object. While parsing, `placeholder` holds a token that is rendered
/// instead of the name and later substituted; reading any attribute of such a
/// relation marks the render as phase-sensitive, forcing a real compile render.
#[derive(Debug, Clone)]
pub struct Relation {
    pub name: RelationName,
    pub placeholder: Option<String>,
    pub sensitive: Option<Arc<AtomicBool>>,
}

impl Relation {
    pub fn resolved(name: RelationName) -> Self {
        Relation {
            name,
            placeholder: None,
            sensitive: None,
        }
    }

    fn touch(&self) {
        if let Some(s) = &self.sensitive {
            s.store(true, Ordering::Relaxed);
        }
    }

    fn with_name(&self, name: RelationName) -> Value {
        self.touch();
        Value::from_object(Relation {
            name,
            placeholder: None,
            sensitive: self.sensitive.clone(),
        })
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.placeholder {
            Some(p) => f.write_str(p),
            None => f.write_str(&self.name.render()),
        }
    }
}

fn opt(v: &Option<String>) -> Value {
    v.as_deref().map(Value::from).unwrap_or(Value::from(()))
}

/// The keys a Relation shows as a mapping (dbt's Relation is a dict-like
/// dataclass: packages test `relation is mapping` and read `metadata.type`).
const RELATION_KEYS: &[&str] = &["path", "type", "quote_policy", "include_policy", "metadata"];

impl Object for Relation {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Str(RELATION_KEYS)
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let n = &self.name;
        let v = match key.as_str()? {
            "metadata" => crate::jinja::to_value(serde_json::json!({"type": "PostgresRelation"})),
            "path" => crate::jinja::to_value(serde_json::json!({
                "database": n.database, "schema": n.schema, "identifier": n.identifier
            })),
            "include_policy" => crate::jinja::to_value(serde_json::json!({
                "database": n.include.database, "schema": n.include.schema, "identifier": n.include.identifier
            })),
            "database" => opt(&n.database),
            "schema" => opt(&n.schema),
            "identifier" | "name" | "table" => opt(&n.identifier),
            "type" => opt(&n.kind),
            "is_table" => Value::from(n.kind.as_deref() == Some("table")),
            "is_view" => Value::from(n.kind.as_deref() == Some("view")),
            "is_materialized_view" => Value::from(n.kind.as_deref() == Some("materialized_view")),
            "is_cte" => Value::from(n.kind.as_deref() == Some("cte")),
            "quote_policy" => crate::jinja::to_value(serde_json::json!({
                "database": n.quote.database, "schema": n.quote.schema, "identifier": n.quote.identifier
            })),
            _ => return None,
        };
        self.touch();
        Some(v)
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let mut name = self.name.clone();
        match method {
            "render" => {
                self.touch();
                Ok(Value::from(self.to_string()))
            }
            "include" | "quote" => {
                let (kwargs,): (Kwargs,) = from_args(args)?;
                let target = if method == "include" {
                    &mut name.include
                } else {
                    &mut name.quote
                };
                if let Some(b) = kwargs.get::<Option<bool>>("database")? {
                    target.database = b;
                }
                if let Some(b) = kwargs.get::<Option<bool>>("schema")? {
                    target.schema = b;
                }
                if let Some(b) = kwargs.get::<Option<bool>>("identifier")? {
                    target.identifier = b;
                }
                Ok(self.with_name(name))
            }
            "incorporate" | "replace_path" => {
                let (kwargs,): (Kwargs,) = from_args(args)?;
                let path: Option<Value> = kwargs.get("path").ok();
                // A part given as none is dropped (`make_temp_relation`).
                for key in ["database", "schema", "identifier"] {
                    let given: Option<Value> = match &path {
                        Some(p) => p.get_item(&Value::from(key)).ok(),
                        None => kwargs.get::<Option<Value>>(key).ok().flatten(),
                    };
                    let Some(v) = given.filter(|v| !v.is_undefined()) else {
                        continue;
                    };
                    let v = (!v.is_none()).then(|| v.to_string());
                    match key {
                        "database" => name.database = v,
                        "schema" => name.schema = v,
                        _ => name.identifier = v,
                    }
                }
                if let Ok(Some(t)) = kwargs.get::<Option<String>>("type") {
                    name.kind = Some(t);
                }
                Ok(self.with_name(name))
            }
            "without_identifier" => {
                name.include.identifier = false;
                Ok(self.with_name(name))
            }
            // `relation.get('metadata', {})`, as on dbt's dict-like Relation.
            "get" => {
                let (key, default): (Value, Option<Value>) = from_args(args)?;
                Ok(self.get_value(&key).or(default).unwrap_or(Value::from(())))
            }
            // `"db".information_schema` (or one of its views), for catalog queries.
            "information_schema" => {
                let (view,): (Option<String>,) = from_args(args)?;
                name.schema = Some("information_schema".into());
                name.quote.schema = false;
                name.include.schema = true;
                name.identifier = view;
                name.include.identifier = name.identifier.is_some();
                name.quote.identifier = false;
                Ok(self.with_name(name))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("Relation has no method '{method}'"),
            )),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_ref(), f)
    }
}
