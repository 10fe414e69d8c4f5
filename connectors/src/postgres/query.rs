//! `query=` PostgreSQL sources: a table provider over the rows of a query.
//!
//! A scan is sent as `WITH croo_query AS (<query>) SELECT <columns> FROM
//! croo_query WHERE <filters>`; the `SELECT` after the CTE is rendered by the
//! same unparser and dialect as a `table=` source, so the projection and every
//! filter the dialect can render are pushed down, and PostgreSQL (12 and
//! later) inlines the CTE into the query, so they reach the tables it reads.
//!
//! The plan node is croo's own [`QueryExec`], not the provider's `SqlExec`:
//! `SqlExec` accepts later filter and limit pushdowns by editing its SQL text
//! (it inserts at the first ` WHERE `), which would land inside the user's
//! query. `QueryExec` accepts none; those filters stay in DataFusion.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result, TableReference};
use datafusion::datasource::TableProvider;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::logical_plan::builder::LogicalTableSource;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use datafusion::sql::unparser::Unparser;
use datafusion::sql::unparser::dialect::PostgreSqlDialect;
use datafusion_table_providers::postgres::DynPostgresConnectionPool;
use datafusion_table_providers::postgres::conn::PostgresConnection;
use datafusion_table_providers::sql::sql_provider_datafusion::{
    default_filter_pushdown, get_stream, project_schema_safe,
};
use futures::TryStreamExt;

/// The name the query gets in the SQL croo sends.
const CTE: &str = "croo_query";

/// The rows of `query` on the server behind `pool`.
pub(crate) struct QueryTable {
    query: String,
    schema: SchemaRef,
    pool: Arc<DynPostgresConnectionPool>,
}

impl fmt::Debug for QueryTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryTable")
            .field("query", &self.query)
            .finish()
    }
}

impl QueryTable {
    /// Prepares (does not run) the query to learn its columns and types.
    /// The error is the user's to fix: it says what PostgreSQL said, or
    /// which column has a type croo cannot read.
    pub(crate) async fn new(
        query: &str,
        pool: Arc<DynPostgresConnectionPool>,
    ) -> std::result::Result<Self, String> {
        let conn = pool.connect().await.map_err(|e| e.to_string())?;
        let pg = conn
            .as_any()
            .downcast_ref::<PostgresConnection>()
            .ok_or("the connection pool did not give a PostgreSQL connection")?;
        let statement = pg
            .conn
            .prepare(&format!("WITH {CTE} AS ({query}) SELECT * FROM {CTE}"))
            .await
            .map_err(|e| match e.as_db_error() {
                Some(db) => format!("PostgreSQL cannot prepare the query: {}", db.message()),
                None => format!("PostgreSQL cannot prepare the query: {e}"),
            })?;
        let mut fields: Vec<Field> = Vec::new();
        for column in statement.columns() {
            let name = column.name();
            if fields.iter().any(|f| f.name() == name) {
                return Err(format!(
                    "the query returns two columns named `{name}`: give them distinct names"
                ));
            }
            let ty = column.type_();
            let data_type = arrow_type(ty.name(), column.type_modifier()).ok_or_else(|| {
                format!(
                    "column `{name}` of the query has PostgreSQL type `{}`, which croo cannot read: cast it in the query (for example `{name}::text` or `{name}::float8`)",
                    ty.name()
                )
            })?;
            fields.push(Field::new(name, data_type, true));
        }
        Ok(Self {
            query: query.to_string(),
            schema: Arc::new(Schema::new(fields)),
            pool,
        })
    }

    /// The SQL of one scan.
    fn sql(
        &self,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<String> {
        let plan = LogicalPlanBuilder::scan_with_filters(
            TableReference::bare(CTE),
            Arc::new(LogicalTableSource::new(Arc::clone(&self.schema))),
            projection.cloned(),
            filters.to_vec(),
        )?
        .limit(0, limit)?
        .build()?;
        let select = Unparser::new(&PostgreSqlDialect {}).plan_to_sql(&plan)?;
        Ok(format!("WITH {CTE} AS ({}) {select}", self.query))
    }
}

/// The Arrow type the provider's row decoder gives a PostgreSQL type, for
/// the types croo can use; `None` for the others.
fn arrow_type(pg_type: &str, type_modifier: i32) -> Option<DataType> {
    Some(match pg_type {
        "int2" => DataType::Int16,
        "int4" => DataType::Int32,
        "int8" => DataType::Int64,
        "float4" => DataType::Float32,
        "float8" => DataType::Float64,
        "bool" => DataType::Boolean,
        "text" | "varchar" | "bpchar" | "name" | "uuid" => DataType::Utf8,
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Nanosecond, None),
        "timestamptz" => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        "numeric" => {
            // libpq's typmod: ((precision << 16) | scale) + 4, or -1.
            let (precision, scale) = if type_modifier >= 4 {
                let m = type_modifier - 4;
                ((m >> 16) & 0xffff, m & 0xffff)
            } else {
                (38, 20)
            };
            DataType::Decimal128(u8::try_from(precision).ok()?, i8::try_from(scale).ok()?)
        }
        _ => return None,
    })
}

#[async_trait]
impl TableProvider for QueryTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(default_filter_pushdown(filters, &PostgreSqlDialect {}))
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let sql = self.sql(projection, filters, limit)?;
        let schema = project_schema_safe(&self.schema, projection)?;
        Ok(Arc::new(QueryExec::new(
            sql,
            schema,
            Arc::clone(&self.pool),
        )))
    }
}

/// Runs one statement on the server and streams its rows.
pub(crate) struct QueryExec {
    sql: String,
    schema: SchemaRef,
    pool: Arc<DynPostgresConnectionPool>,
    properties: Arc<PlanProperties>,
}

impl QueryExec {
    fn new(sql: String, schema: SchemaRef, pool: Arc<DynPostgresConnectionPool>) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            sql,
            schema,
            pool,
            properties,
        }
    }
}

impl fmt::Debug for QueryExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueryExec sql={}", self.sql)
    }
}

impl DisplayAs for QueryExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "QueryExec sql={}", self.sql)
    }
}

impl ExecutionPlan for QueryExec {
    fn name(&self) -> &'static str {
        "QueryExec"
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "QueryExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let stream = futures::stream::once(get_stream(
            Arc::clone(&self.pool),
            self.sql.clone(),
            Arc::clone(&self.schema),
        ))
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_type_modifiers_give_precision_and_scale() {
        // numeric(12,2): ((12 << 16) | 2) + 4
        assert_eq!(
            arrow_type("numeric", (12 << 16 | 2) + 4),
            Some(DataType::Decimal128(12, 2))
        );
        assert_eq!(
            arrow_type("numeric", -1),
            Some(DataType::Decimal128(38, 20))
        );
        assert_eq!(arrow_type("point", -1), None);
        assert_eq!(arrow_type("int8", -1), Some(DataType::Int64));
    }
}
