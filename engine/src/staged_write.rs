//! Staged tables written one file per partition, on a cluster.
//!
//! DataFusion writes a table through `DataSinkExec`, which takes a single
//! input partition: on Ballista the whole table goes through one task on
//! one executor, a serial step that more executors do not shorten (71 s
//! for a 48 M-row table on the loopback cluster, benches/SCALING.md). The
//! tables croo stages (`materialise::ClusterStaging`) ask for this module's
//! write instead, with a marker in their Parquet options ([`MARKER`]): the
//! scheduler's query planner ([`query_planner`], [`PerPartition`]) turns
//! `DataSinkExec(CoalescePartitionsExec(input))` into [`StagedWriteExec`]
//! over `input`, which writes each of its partitions as a Parquet file of
//! its own (`part-<task>-<partition>.parquet`) from the task that computed
//! it and answers with the row counts. [`Codec`] carries the node from the
//! scheduler to the executors (Ballista's own codec for everything else).
//! Entered through [`query_planner`] (for the scheduler's session) and
//! [`codec`].
//!
//! A staged table is read back as the folder's Parquet files, whatever
//! their number, so the rows are the same. A file is written under a
//! temporary name and renamed when complete; [`write`] checks that the
//! folder's files hold the rows the tasks reported (a task run twice would
//! leave its rows twice).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::config::{ConfigOptions, TableParquetOptions};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, internal_err};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::datasource::physical_plan::FileSink;
use datafusion::datasource::physical_plan::parquet::ParquetSink;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::execution::TaskContext;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::LogicalPlan;
use datafusion::parquet::arrow::AsyncArrowWriter;
use datafusion::parquet::file::metadata::ParquetMetaDataReader;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::DataFrame;
use futures::StreamExt;

/// The key, in a staged write's Parquet options' key-value metadata, that
/// asks for one file per partition.
pub const MARKER: &str = "croo.staged";

/// The Parquet options of a staged write: DataFusion's defaults, marked.
pub fn marked_options() -> TableParquetOptions {
    let mut options = TableParquetOptions::default();
    options
        .key_value_metadata
        .insert(MARKER.to_string(), Some("per-partition".to_string()));
    options
}

/// `df` written into the folder `dir` (a path every executor and this
/// process share) as a Parquet file per partition, by the cluster's tasks
/// when the session is planned by [`query_planner`]. Returns the number of
/// writers (one per partition; one when DataFusion's own sink wrote). The
/// rows in the folder's files must be the rows the write reported: a task
/// that ran twice (an executor lost after its file was complete) would
/// leave its rows twice, and that is an error here, not a table with
/// duplicated rows.
pub async fn write(df: DataFrame, dir: &Path) -> Result<usize> {
    let counts = df
        .write_parquet(
            &format!("{}/", dir.display()),
            DataFrameWriteOptions::new(),
            Some(marked_options()),
        )
        .await?;
    let reported: u64 = counts
        .iter()
        .filter_map(|b| b.column(0).as_any().downcast_ref::<UInt64Array>())
        .flat_map(|a| a.iter().flatten())
        .sum();
    let writers = counts.iter().map(|b| b.num_rows()).sum();
    let mut found = 0u64;
    for entry in std::fs::read_dir(dir).map_err(|e| io_error("reading", dir, e))? {
        let path = entry.map_err(|e| io_error("reading", dir, e))?.path();
        if path.extension().is_none_or(|x| x != "parquet") {
            continue;
        }
        let file = std::fs::File::open(&path).map_err(|e| io_error("reading", &path, e))?;
        let meta = ParquetMetaDataReader::new().parse_and_finish(&file)?;
        found += meta.file_metadata().num_rows().max(0) as u64;
    }
    if found != reported {
        return Err(DataFusionError::Execution(format!(
            "the staged table in {} holds {found} rows where its write reported {reported}: \
             a task wrote its rows twice (run again)",
            dir.display()
        )));
    }
    Ok(writers)
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> DataFusionError {
    DataFusionError::Execution(format!("{what} {}: {e}", path.display()))
}

/// The query planner of croo's scheduler: DataFusion's, then
/// [`PerPartition`] over the plan. A planner rather than a physical
/// optimizer rule: Ballista's adaptive planner replaces the session's
/// rules with its own but plans through the session's query planner.
pub fn query_planner() -> Arc<dyn QueryPlanner + Send + Sync> {
    Arc::new(Planner)
}

/// See [`query_planner`].
#[derive(Debug)]
struct Planner;

#[async_trait::async_trait]
impl QueryPlanner for Planner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = DefaultPhysicalPlanner::default()
            .create_physical_plan(logical_plan, session)
            .await?;
        PerPartition.optimize(plan, session.config_options())
    }
}

/// The rewrite that writes marked Parquet writes one file per partition
/// ([`StagedWriteExec`]).
#[derive(Debug)]
pub struct PerPartition;

impl PhysicalOptimizerRule for PerPartition {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(sink) = node.downcast_ref::<DataSinkExec>() else {
                return Ok(Transformed::no(node));
            };
            let Some(parquet) = sink.sink().downcast_ref::<ParquetSink>() else {
                return Ok(Transformed::no(node));
            };
            if !parquet
                .parquet_options()
                .key_value_metadata
                .contains_key(MARKER)
            {
                return Ok(Transformed::no(node));
            }
            let Some(dir) = local_dir(&parquet.config().original_url) else {
                return Ok(Transformed::no(node));
            };
            let mut input = Arc::clone(sink.input());
            if let Some(c) = input.downcast_ref::<CoalescePartitionsExec>() {
                input = Arc::clone(c.input());
            }
            Ok(Transformed::yes(
                Arc::new(StagedWriteExec::new(input, dir)) as Arc<dyn ExecutionPlan>
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "croo_per_partition_staged_writes"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The folder a write's URL names, for local paths (`/dir/`,
/// `file:///dir/`); `None` otherwise.
fn local_dir(url: &str) -> Option<PathBuf> {
    let path = url.strip_prefix("file://").unwrap_or(url);
    path.starts_with('/').then(|| PathBuf::from(path))
}

/// Writes each partition of its input as `part-<partition>.parquet` into a
/// folder and answers one row per partition: the rows written (`count`,
/// as `DataSinkExec` does).
#[derive(Debug)]
pub struct StagedWriteExec {
    input: Arc<dyn ExecutionPlan>,
    dir: PathBuf,
    properties: Arc<PlanProperties>,
}

impl StagedWriteExec {
    /// `input` written into `dir`, a file per partition.
    pub fn new(input: Arc<dyn ExecutionPlan>, dir: PathBuf) -> StagedWriteExec {
        let partitions = input.output_partitioning().partition_count();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(count_schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        StagedWriteExec {
            input,
            dir,
            properties: Arc::new(properties),
        }
    }

    /// The folder written into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

impl DisplayAs for StagedWriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StagedWriteExec: dir={}", self.dir.display())
    }
}

impl ExecutionPlan for StagedWriteExec {
    fn name(&self) -> &str {
        "StagedWriteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match children.as_slice() {
            [input] => Ok(Arc::new(StagedWriteExec::new(
                Arc::clone(input),
                self.dir.clone(),
            ))),
            _ => internal_err!("StagedWriteExec takes one input"),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        // On a cluster each task runs its partition as partition 0 of a
        // plan of its own: the task's identity (job, stage, task, attempt)
        // names its file.
        let name = match context.task_id() {
            Some(task) => format!(
                "part-{}-{partition}",
                task.chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect::<String>()
            ),
            None => format!("part-{partition}"),
        };
        let mut input = self.input.execute(partition, context)?;
        let schema = self.input.schema();
        let dir = self.dir.clone();
        let written = async move {
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|e| io_error("creating", &dir, e))?;
            let path = dir.join(format!("{name}.parquet"));
            let partial = dir.join(format!("{name}.parquet.partial"));
            let file = tokio::fs::File::create(&partial)
                .await
                .map_err(|e| io_error("writing", &partial, e))?;
            // DataFusion's default writer settings, as its own sink uses;
            // the Arrow schema goes into the file's metadata as there.
            let props = TableParquetOptions::default()
                .global
                .into_writer_properties_builder()?
                .build();
            let mut writer = AsyncArrowWriter::try_new(file, schema, Some(props))?;
            let mut rows = 0u64;
            while let Some(batch) = input.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                writer.write(&batch).await?;
            }
            writer.close().await?;
            tokio::fs::rename(&partial, &path)
                .await
                .map_err(|e| io_error("renaming into", &path, e))?;
            Ok(RecordBatch::try_new(
                count_schema(),
                vec![Arc::new(UInt64Array::from(vec![rows]))],
            )?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            count_schema(),
            futures::stream::once(written),
        )))
    }
}

#[cfg(feature = "distributed")]
pub use codec::{Codec, codec};

#[cfg(feature = "distributed")]
mod codec {
    use std::sync::Arc;

    use ballista_core::serde::BallistaPhysicalExtensionCodec;
    use datafusion::common::{DataFusionError, Result};
    use datafusion::execution::TaskContext;
    use datafusion::physical_plan::ExecutionPlan;
    use datafusion_proto::physical_plan::{
        PhysicalExtensionCodec, PhysicalProtoConverterExtension,
    };

    use super::StagedWriteExec;

    /// What a [`StagedWriteExec`]'s bytes start with (never the first byte
    /// of Ballista's protobuf nodes, a field tag).
    const TAG: &[u8] = b"\0croo-staged-write\0";

    /// Ballista's physical codec, plus [`StagedWriteExec`].
    pub fn codec() -> Arc<dyn PhysicalExtensionCodec> {
        Arc::new(Codec::default())
    }

    /// See [`codec`].
    #[derive(Debug, Default)]
    pub struct Codec {
        ballista: BallistaPhysicalExtensionCodec,
    }

    impl PhysicalExtensionCodec for Codec {
        fn try_decode(
            &self,
            buf: &[u8],
            inputs: &[Arc<dyn ExecutionPlan>],
            ctx: &TaskContext,
            proto_converter: &dyn PhysicalProtoConverterExtension,
        ) -> Result<Arc<dyn ExecutionPlan>> {
            let Some(dir) = buf.strip_prefix(TAG) else {
                return self.ballista.try_decode(buf, inputs, ctx, proto_converter);
            };
            let dir = std::str::from_utf8(dir)
                .map_err(|e| DataFusionError::Internal(format!("a staged write's folder: {e}")))?;
            match inputs {
                [input] => Ok(Arc::new(StagedWriteExec::new(
                    Arc::clone(input),
                    dir.into(),
                ))),
                _ => Err(DataFusionError::Internal(
                    "a staged write takes one input".into(),
                )),
            }
        }

        fn try_encode(
            &self,
            node: Arc<dyn ExecutionPlan>,
            buf: &mut Vec<u8>,
            proto_converter: &dyn PhysicalProtoConverterExtension,
        ) -> Result<()> {
            if let Some(w) = node.downcast_ref::<StagedWriteExec>() {
                let dir = w.dir().to_str().ok_or_else(|| {
                    DataFusionError::Internal(format!(
                        "a staged write's folder is not UTF-8: {}",
                        w.dir().display()
                    ))
                })?;
                buf.extend_from_slice(TAG);
                buf.extend_from_slice(dir.as_bytes());
                return Ok(());
            }
            self.ballista.try_encode(node, buf, proto_converter)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

    /// A session of `partitions` partitions with the planner, as croo's
    /// scheduler plans.
    fn session(partitions: usize) -> SessionContext {
        let state = SessionStateBuilder::new()
            .with_config(SessionConfig::new().with_target_partitions(partitions))
            .with_default_features()
            .with_query_planner(query_planner())
            .build();
        SessionContext::new_with_state(state)
    }

    /// 1001 rows `(k, v)`, some `k` NULL, in four partitions.
    async fn table(ctx: &SessionContext) -> datafusion::prelude::DataFrame {
        ctx.sql(
            "SELECT CASE WHEN value % 100 = 0 THEN NULL ELSE value END AS k, value * 0.5 AS v \
             FROM generate_series(1, 1001)",
        )
        .await
        .unwrap()
        .repartition(datafusion::logical_expr::Partitioning::RoundRobinBatch(4))
        .unwrap()
    }

    async fn rows(df: datafusion::prelude::DataFrame) -> Vec<String> {
        let batches = df
            .sort(vec![datafusion::prelude::col("k").sort(true, false)])
            .unwrap()
            .collect()
            .await
            .unwrap();
        datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn files(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn marked_writes_are_one_file_per_partition_with_every_row() {
        let ctx = session(4);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t");
        let df = table(&ctx).await;
        let plan = df.clone().create_physical_plan().await.unwrap();
        let partitions = plan.output_partitioning().partition_count();
        assert!(partitions > 1);
        let expected = rows(df.clone()).await;
        assert_eq!(write(df, &dir).await.unwrap(), partitions);
        let mut names: Vec<String> = (0..partitions)
            .map(|i| format!("part-{i}.parquet"))
            .collect();
        names.sort();
        assert_eq!(files(&dir), names);
        let back = ctx
            .read_parquet(
                &format!("{}/", dir.display()),
                ParquetReadOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(rows(back).await, expected);
    }

    #[tokio::test]
    async fn rows_written_twice_are_an_error() {
        let ctx = session(4);
        let tmp = tempfile::tempdir().unwrap();
        // Complete files left by an earlier attempt of the tasks.
        let first = tmp.path().join("first");
        write(table(&ctx).await, &first).await.unwrap();
        let dir = tmp.path().join("t");
        std::fs::create_dir_all(&dir).unwrap();
        for f in files(&first) {
            std::fs::copy(first.join(&f), dir.join(format!("earlier-{f}"))).unwrap();
        }
        let e = write(table(&ctx).await, &dir)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("where its write reported 1001"), "{e}");
    }

    #[tokio::test]
    async fn unmarked_writes_keep_datafusions_sink() {
        let ctx = session(4);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t");
        table(&ctx)
            .await
            .write_parquet(
                &format!("{}/", dir.display()),
                DataFrameWriteOptions::new(),
                None,
            )
            .await
            .unwrap();
        assert!(
            files(&dir).iter().all(|f| !f.starts_with("part-")),
            "{:?}",
            files(&dir)
        );
    }

    #[cfg(feature = "distributed")]
    #[tokio::test]
    async fn the_codec_carries_a_staged_write_and_ballistas_nodes() {
        use datafusion_proto::bytes::{
            physical_plan_from_bytes_with_extension_codec,
            physical_plan_to_bytes_with_extension_codec,
        };
        let ctx = session(4);
        let input = table(&ctx).await.create_physical_plan().await.unwrap();
        let partitions = input.output_partitioning().partition_count();
        let plan: Arc<dyn ExecutionPlan> =
            Arc::new(StagedWriteExec::new(input, PathBuf::from("/some/where/t0")));
        let codec = codec();
        let bytes = physical_plan_to_bytes_with_extension_codec(plan, codec.as_ref()).unwrap();
        let back =
            physical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), codec.as_ref())
                .unwrap();
        let w = back.downcast_ref::<StagedWriteExec>().unwrap();
        assert_eq!(w.dir(), std::path::Path::new("/some/where/t0"));
        assert_eq!(back.output_partitioning().partition_count(), partitions);
        // Ballista's own nodes still go through Ballista's codec.
        let shuffle: Arc<dyn ExecutionPlan> = Arc::new(
            ballista_core::execution_plans::ShuffleWriterExec::try_new(
                "job".to_string().into(),
                1,
                back,
                String::new(),
            )
            .unwrap(),
        );
        let bytes = physical_plan_to_bytes_with_extension_codec(shuffle, codec.as_ref()).unwrap();
        let back =
            physical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), codec.as_ref())
                .unwrap();
        assert!(
            back.downcast_ref::<ballista_core::execution_plans::ShuffleWriterExec>()
                .is_some()
        );
        assert!(
            back.children()[0]
                .downcast_ref::<StagedWriteExec>()
                .is_some()
        );
    }
}
