//! The `Column` value that `adapter.get_columns_in_relation` and `api.Column`
//! return: dbt's attributes (`name`, `quoted`, `dtype`, `data_type`, sizes)
//! and type predicates, which packages use to build column lists.

use std::sync::Arc;

use minijinja::value::{from_args, Kwargs, Object, ObjectRepr, Value};
use minijinja::{Error, ErrorKind, State};

use crate::sql::quote_ident;

/// A column of a relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// The type without its modifiers, as `information_schema` names it
    /// (`character varying`, `numeric`, `timestamp without time zone`).
    pub dtype: String,
    pub char_size: Option<u64>,
    pub numeric_precision: Option<u64>,
    pub numeric_scale: Option<u64>,
}

const STRING_TYPES: &[&str] = &[
    "text",
    "character varying",
    "character",
    "varchar",
    "char",
    "string",
    "nvarchar",
    "bpchar",
];
const INTEGER_TYPES: &[&str] = &[
    "smallint",
    "integer",
    "bigint",
    "smallserial",
    "serial",
    "bigserial",
    "int",
    "int2",
    "int4",
    "int8",
    "serial2",
    "serial4",
    "serial8",
];
const FLOAT_TYPES: &[&str] = &[
    "real",
    "float4",
    "float",
    "double precision",
    "float8",
    "double",
];
const NUMERIC_TYPES: &[&str] = &["numeric", "decimal"];

impl Column {
    /// A column from the warehouse's full type (`character varying(20)`,
    /// `numeric(10,2)`, `timestamp(3) without time zone`, `integer[]`).
    pub fn from_description(name: &str, full_type: &str) -> Column {
        let t = full_type.trim();
        let (base, args, rest) = match (t.find('('), t.find(')')) {
            (Some(open), Some(close)) if open < close => {
                (&t[..open], &t[open + 1..close], &t[close + 1..])
            }
            _ => (t, "", ""),
        };
        let dtype = format!("{}{}", base.trim_end(), rest).trim().to_string();
        let nums: Vec<Option<u64>> = args
            .split(',')
            .filter(|a| !a.trim().is_empty())
            .map(|a| a.trim().parse().ok())
            .collect();
        let mut c = Column {
            name: name.to_string(),
            dtype,
            char_size: None,
            numeric_precision: None,
            numeric_scale: None,
        };
        if c.is_string() {
            c.char_size = nums.first().copied().flatten();
        } else if c.is_numeric() {
            c.numeric_precision = nums.first().copied().flatten();
            c.numeric_scale = nums.get(1).copied().flatten();
        }
        c
    }

    fn lower(&self) -> String {
        self.dtype.to_ascii_lowercase()
    }

    pub fn is_string(&self) -> bool {
        STRING_TYPES.contains(&self.lower().as_str())
    }

    pub fn is_integer(&self) -> bool {
        INTEGER_TYPES.contains(&self.lower().as_str())
    }

    pub fn is_float(&self) -> bool {
        FLOAT_TYPES.contains(&self.lower().as_str())
    }

    pub fn is_numeric(&self) -> bool {
        NUMERIC_TYPES.contains(&self.lower().as_str())
    }

    pub fn is_number(&self) -> bool {
        self.is_integer() || self.is_float() || self.is_numeric()
    }

    /// dbt's default when a string column has no declared size.
    pub fn string_size(&self) -> u64 {
        self.char_size.unwrap_or(256)
    }

    /// The type with its modifiers, as DDL would declare it; unbounded
    /// strings stay `text` / `character varying`, as dbt does on Postgres.
    pub fn data_type(&self) -> String {
        let lower = self.lower();
        if self.is_string() {
            if lower == "text" || self.char_size.is_none() {
                return self.dtype.clone();
            }
            return format!("{}({})", self.dtype, self.string_size());
        }
        if self.is_numeric() {
            if let (Some(p), Some(s)) = (self.numeric_precision, self.numeric_scale) {
                return format!("{}({p},{s})", self.dtype);
            }
        }
        self.dtype.clone()
    }
}

impl Object for Column {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let size = |v: Option<u64>| v.map(Value::from).unwrap_or(Value::from(()));
        Some(match key.as_str()? {
            "name" | "column" => Value::from(self.name.clone()),
            "quoted" => Value::from(quote_ident(&self.name)),
            "dtype" => Value::from(self.dtype.clone()),
            "data_type" => Value::from(self.data_type()),
            "char_size" => size(self.char_size),
            "numeric_precision" => size(self.numeric_precision),
            "numeric_scale" => size(self.numeric_scale),
            // Nested fields (BigQuery structs); none on Postgres and Redshift.
            "fields" => Value::from(Vec::<Value>::new()),
            _ => return None,
        })
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "is_string" => Ok(Value::from(self.is_string())),
            "is_number" => Ok(Value::from(self.is_number())),
            "is_numeric" => Ok(Value::from(self.is_numeric())),
            "is_integer" => Ok(Value::from(self.is_integer())),
            "is_float" => Ok(Value::from(self.is_float())),
            "string_size" => {
                if !self.is_string() {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!("column {} is not a string column", self.name),
                    ));
                }
                Ok(Value::from(self.string_size()))
            }
            "string_type" => {
                let (size,): (u64,) = from_args(args)?;
                Ok(Value::from(format!("character varying({size})")))
            }
            "numeric_type" => {
                let (dtype, p, s): (String, Option<u64>, Option<u64>) = from_args(args)?;
                Ok(Value::from(match (p, s) {
                    (Some(p), Some(s)) => format!("{dtype}({p},{s})"),
                    _ => dtype,
                }))
            }
            "can_expand_to" => {
                let (other,): (Value,) = from_args(args)?;
                let Some(o) = other.downcast_object_ref::<Column>() else {
                    return Ok(Value::from(false));
                };
                Ok(Value::from(
                    self.is_string() && o.is_string() && self.string_size() < o.string_size(),
                ))
            }
            "literal" => {
                let (v,): (Value,) = from_args(args)?;
                Ok(Value::from(format!("{v}::{}", self.data_type())))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("Column has no method named {method}"),
            )),
        }
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result
    where
        Self: Sized + 'static,
    {
        write!(f, "<Column {} ({})>", self.name, self.data_type())
    }
}

/// `api.Column`: `create(name, dtype)` and `from_description(name, raw_type)`.
#[derive(Debug)]
pub struct ColumnApi;

impl Object for ColumnApi {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let (name, dtype, kwargs): (String, Option<String>, Kwargs) = from_args(args)?;
        let dtype = match dtype {
            Some(d) => d,
            None => kwargs
                .get::<Option<String>>("dtype")?
                .or(kwargs.get::<Option<String>>("raw_data_type")?)
                .unwrap_or_default(),
        };
        match method {
            "create" | "from_description" => {
                Ok(Value::from_object(Column::from_description(&name, &dtype)))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_split_like_information_schema() {
        let c = Column::from_description("a", "character varying(20)");
        assert_eq!(
            (c.dtype.as_str(), c.char_size),
            ("character varying", Some(20))
        );
        assert_eq!(c.data_type(), "character varying(20)");
        let n = Column::from_description("n", "numeric(10,2)");
        assert!(n.is_number() && n.is_numeric());
        assert_eq!(n.data_type(), "numeric(10,2)");
        let t = Column::from_description("t", "timestamp(3) without time zone");
        assert_eq!(t.dtype, "timestamp without time zone");
        let s = Column::from_description("s", "text");
        assert!(s.is_string());
        assert_eq!((s.data_type().as_str(), s.string_size()), ("text", 256));
        assert!(Column::from_description("i", "integer").is_integer());
    }
}
