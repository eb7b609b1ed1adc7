//! The jobs the `weir` binary registers for its session runtime (`weir session`,
//! `weir submit`, `weir bench short-jobs`).
//!
//! - `word-count` (version 1): counts the words of the artifact `input` (lines of text) at
//!   parameter `parallelism` (default 4): parallel sequence of line numbers → words → keyed
//!   running count. With parameter `output = memory` the final counts are kept in this process
//!   for [`take_word_counts`] (the benchmark checks every job's result this way).
//! - `iceberg-ingest` (version 1): writes rows `id = 0..rows` (parameter `rows`, default
//!   100,000; `rate` rows/s, default 20,000) into table `table` (default `ha.events`) of the
//!   SQLite catalog in directory `warehouse` (required), exactly once through the two-phase
//!   Iceberg sink whose transactional id is the job id; parameter `writers` (default 2). Set
//!   `execution.checkpointing.interval` in the submission: rows are committed per checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use arrow_array::{Int64Array, RecordBatch, StringArray};
use weir_engine::{Sink, UserError};
use weir_maintenance::iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use weir_maintenance::iceberg::{NamespaceIdent, TableIdent};
use weir_maintenance::sink::{IcebergSink, IcebergSinkConfig, IcebergSinkExt, RowBatcher};
use weir_maintenance::{table_io, CatalogConfig, IcebergRuntime};
use weir_operators::{DataStreamExt, Generator, KeyedStreamExt, StreamEnvExt};
use weir_session::JobRegistry;

type Counts = Arc<Mutex<HashMap<String, u64>>>;

fn outputs() -> &'static Mutex<HashMap<String, Counts>> {
    static OUTPUTS: OnceLock<Mutex<HashMap<String, Counts>>> = OnceLock::new();
    OUTPUTS.get_or_init(Default::default)
}

/// Takes the final counts of word-count job `job_id` (run with `output = memory`).
pub fn take_word_counts(job_id: &str) -> Option<BTreeMap<String, u64>> {
    let counts = outputs().lock().ok()?.remove(job_id)?;
    let map = counts.lock().ok()?;
    Some(map.iter().map(|(k, v)| (k.clone(), *v)).collect())
}

struct KeepLargest(Counts);

impl Sink for KeepLargest {
    type In = (String, u64);
    fn write(&mut self, (word, n): (String, u64)) -> Result<(), UserError> {
        let mut m = self.0.lock().map_err(|_| "word counts poisoned")?;
        let e = m.entry(word).or_insert(0);
        *e = (*e).max(n);
        Ok(())
    }
}

/// The registry of the `weir` binary's jobs.
pub fn registry() -> JobRegistry {
    let mut r = JobRegistry::new();
    r.register("word-count", 1, |ctx, env| {
        let input = ctx
            .artifact("input")?
            .ok_or("job 'word-count' needs the artifact 'input' (lines of text)")?;
        let text = String::from_utf8(input).map_err(|_| "artifact 'input' is not UTF-8 text")?;
        let lines: Arc<Vec<String>> = Arc::new(text.lines().map(str::to_string).collect());
        let parallelism: usize = ctx.parameter_or("parallelism", 4)?;
        if parallelism == 0 {
            return Err("parameter 'parallelism' must be at least 1".into());
        }
        let counts: Counts = Default::default();
        if ctx.parameter("output") == Some("memory") {
            outputs()
                .lock()
                .map_err(|_| "word counts poisoned")?
                .insert(ctx.job_id().to_string(), counts.clone());
        }
        let ls = lines.clone();
        let sink = counts.clone();
        env.generate_sequence(0..lines.len() as u64)
            .set_parallelism(parallelism)
            .flat_map(move |i: u64| {
                ls[i as usize]
                    .split_whitespace()
                    .map(|w| (w.to_string(), 1u64))
                    .collect::<Vec<_>>()
            })
            .key_by(|(w, _): &(String, u64)| w.clone())
            .reduce(|(w, a), (_, b)| (w, a + b))
            .set_parallelism(parallelism)
            .sink("counts", move |_| KeepLargest(sink.clone()))
            .set_parallelism(parallelism);
        Ok(())
    });
    r.register("iceberg-ingest", 1, |ctx, env| {
        let warehouse = ctx
            .parameter("warehouse")
            .ok_or("job 'iceberg-ingest' needs the parameter 'warehouse' (a directory)")?
            .to_string();
        let table_name = ctx.parameter("table").unwrap_or("ha.events").to_string();
        let (ns, name) = table_name
            .split_once('.')
            .ok_or_else(|| format!("parameter 'table': '{table_name}' is not namespace.table"))?;
        let rows: u64 = ctx.parameter_or("rows", 100_000)?;
        let rate: f64 = ctx.parameter_or("rate", 20_000.0)?;
        let writers: usize = ctx.parameter_or("writers", 2)?;
        if !(rate.is_finite() && rate > 0.0) {
            return Err(format!(
                "parameter 'rate': {rate} is not a positive number of rows per second"
            )
            .into());
        }
        if writers == 0 {
            return Err("parameter 'writers' must be at least 1".into());
        }
        let catalog = CatalogConfig::embedded(&warehouse);
        let table = TableIdent::new(NamespaceIdent::new(ns.into()), name.into());
        let schema = ingest_schema()?;
        IcebergRuntime::new(1)?.block_on(async {
            let c = catalog.open().await?;
            table_io::create_table_if_missing(&*c, &table, schema).await?;
            Ok::<_, UserError>(())
        })?;
        let sink = IcebergSinkConfig::new(catalog, table, ctx.job_id());
        env.generate(Generator::new(|i| i).bounded(rows).rate_limited(rate))
            .set_parallelism(1)
            .uid("rows")
            .transform("Batches", |_| RowBatcher::new(500, ingest_batch))
            .uid("batches")
            .set_parallelism(1)
            .rebalance()
            .sink_to_iceberg(IcebergSink::new(sink).writers(writers).uid("ingest-sink"));
        Ok(())
    });
    r
}

/// The schema of `iceberg-ingest` tables: `id` (long), `note` (string).
///
/// # Errors
///
/// Returns the schema builder's [`iceberg::Error`](weir_maintenance::iceberg::Error) as a
/// [`UserError`]; the fields are fixed, with distinct ids and names, so this does not happen.
pub fn ingest_schema() -> Result<Schema, UserError> {
    Ok(Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::optional(2, "note", Type::Primitive(PrimitiveType::String)).into(),
        ])
        .build()?)
}

fn ingest_batch(rows: &[u64]) -> Result<RecordBatch, UserError> {
    let arrow: arrow_schema::Schema = (&ingest_schema()?)
        .try_into()
        .map_err(|e: weir_maintenance::iceberg::Error| e.to_string())?;
    Ok(RecordBatch::try_new(
        Arc::new(arrow),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|&i| i as i64))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|i| format!("row {i}")),
            )),
        ],
    )?)
}
