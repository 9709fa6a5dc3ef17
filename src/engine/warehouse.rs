//! The warehouse as templates see it (`jinja::Warehouse`), over an adapter: the
//! SQL for each request comes from the adapter's dialect.

use std::sync::Arc;

use crate::adapter::{Adapter, Batch, RelationKind};
use crate::jinja::{DropKind, Warehouse, WarehouseColumn, WarehouseError};
use crate::table::Table;

/// Lets compile-phase renders reach the warehouse through an adapter.
pub struct AdapterWarehouse(pub Arc<dyn Adapter>);

impl AdapterWarehouse {
    pub fn shared(adapter: &Arc<dyn Adapter>) -> Arc<dyn Warehouse> {
        Arc::new(AdapterWarehouse(adapter.clone()))
    }

    fn run(&self, sql: String) -> Result<(), WarehouseError> {
        self.0.execute(&Batch {
            statements: vec![sql],
            atomic: false,
        })?;
        Ok(())
    }
}

impl Warehouse for AdapterWarehouse {
    fn query(&self, sql: &str) -> Result<Table, WarehouseError> {
        Ok(self.0.query(sql)?)
    }

    fn execute(&self, sql: &str) -> Result<(), WarehouseError> {
        self.run(sql.to_string())
    }

    fn relation_type(
        &self,
        schema: &str,
        identifier: &str,
    ) -> Result<Option<String>, WarehouseError> {
        Ok(self
            .0
            .relation_type(schema, identifier)?
            .map(|k| k.dbt_name().to_string()))
    }

    fn columns(
        &self,
        schema: &str,
        identifier: &str,
    ) -> Result<Vec<WarehouseColumn>, WarehouseError> {
        Ok(self
            .0
            .columns_of(schema, identifier)?
            .into_iter()
            .map(|c| WarehouseColumn {
                name: c.name,
                data_type: c.data_type,
            })
            .collect())
    }

    fn drop_relation(&self, relation: &str, kind: DropKind) -> Result<(), WarehouseError> {
        let kind = match kind {
            DropKind::Table => RelationKind::Table,
            DropKind::View => RelationKind::View,
            DropKind::MaterializedView => RelationKind::MaterializedView,
        };
        self.run(self.0.dialect().drop_relation(kind, relation))
    }

    fn truncate_relation(&self, relation: &str) -> Result<(), WarehouseError> {
        self.run(self.0.dialect().truncate(relation))
    }

    fn create_schema(&self, schema: &str) -> Result<(), WarehouseError> {
        self.run(self.0.dialect().create_schema(schema))
    }

    fn drop_schema(&self, schema: &str) -> Result<(), WarehouseError> {
        self.run(self.0.dialect().drop_schema(schema))
    }
}

/// How a lazy warehouse connects.
pub type Connect = Box<dyn Fn() -> Result<Arc<dyn Adapter>, crate::error::Error> + Send + Sync>;

/// A warehouse that connects on first use: `compile` renders against the
/// warehouse like dbt, but a project whose templates never ask it anything
/// never connects (nor starts a local server).
pub struct LazyWarehouse {
    connect: Connect,
    inner: std::sync::OnceLock<Result<AdapterWarehouse, ConnectFailed>>,
}

/// The first connection attempt failed; every later request reports it again.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot connect to the warehouse: {0}")]
pub struct ConnectFailed(String);

impl LazyWarehouse {
    pub fn shared(connect: Connect) -> Arc<dyn Warehouse> {
        Arc::new(LazyWarehouse {
            connect,
            inner: std::sync::OnceLock::new(),
        })
    }

    fn get(&self) -> Result<&AdapterWarehouse, WarehouseError> {
        self.inner
            .get_or_init(|| {
                (self.connect)()
                    .map(AdapterWarehouse)
                    .map_err(|e| ConnectFailed(e.to_string()))
            })
            .as_ref()
            .map_err(|e| Box::new(e.clone()) as WarehouseError)
    }
}

impl Warehouse for LazyWarehouse {
    fn query(&self, sql: &str) -> Result<Table, WarehouseError> {
        self.get()?.query(sql)
    }

    fn execute(&self, sql: &str) -> Result<(), WarehouseError> {
        self.get()?.execute(sql)
    }

    fn relation_type(
        &self,
        schema: &str,
        identifier: &str,
    ) -> Result<Option<String>, WarehouseError> {
        self.get()?.relation_type(schema, identifier)
    }

    fn columns(
        &self,
        schema: &str,
        identifier: &str,
    ) -> Result<Vec<WarehouseColumn>, WarehouseError> {
        self.get()?.columns(schema, identifier)
    }

    fn drop_relation(&self, relation: &str, kind: DropKind) -> Result<(), WarehouseError> {
        self.get()?.drop_relation(relation, kind)
    }

    fn truncate_relation(&self, relation: &str) -> Result<(), WarehouseError> {
        self.get()?.truncate_relation(relation)
    }

    fn create_schema(&self, schema: &str) -> Result<(), WarehouseError> {
        self.get()?.create_schema(schema)
    }

    fn drop_schema(&self, schema: &str) -> Result<(), WarehouseError> {
        self.get()?.drop_schema(schema)
    }
}
