//! [`ValoriKnnExec`]: the engine's search as an execution plan, and the
//! planners that create it.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Float64Array, RecordBatch, RecordBatchOptions, UInt64Array,
};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::DFSchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::TaskContext;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_expr::create_physical_expr;
use datafusion::physical_expr::utils::{collect_columns, reassign_expr_columns};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalSortExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PhysicalExpr, PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
    apply_expression_roots,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use valori_core::distance::Distance;
use valori_core::event::RecordId;
use valori_core::hnsw::SearchOptions;
use valori_core::state::{Collection, FILTER_EXACT_RATIO};
use valori_engine::Engine;

use super::node::KnnNode;
use super::{BoundParams, KnnSearch, QueryVector, RANK_COLUMN, TagSet};
use crate::functions::constant_vector;
use crate::index_scan::RowSource;
use crate::provider::{ScanError, rows_batch, u64_literal};
use crate::settings::{SearchSettings, ValoriOptions};

/// With a residual filter, the first request asks for this many times `k`
/// candidates, and each further request for this many times the last.
const OVERFETCH_FACTOR: usize = 4;

/// A residual filter's selectivity is estimated on at most this many of
/// the rows the tags allow, taken at an even stride (the same rows for
/// the same state, so the same plan).
const SELECTIVITY_SAMPLE_ROWS: usize = 1024;

/// Rows the residual filter is evaluated on at once when it is evaluated
/// on every row.
const PREFILTER_CHUNK_ROWS: usize = 8192;

/// How the engine answers a search, as far as planning can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Through the HNSW graph (rows not yet indexed are scanned exactly).
    Hnsw,
    /// An exact scan: asked for, no index yet, or a tag filter so
    /// selective that scanning its rows is cheaper.
    Exact,
    /// Some tags of a tag set one way, some the other.
    Mixed,
    /// Decided when the query runs, by the residual filter's selectivity
    /// on a sample: a selective filter is evaluated on every row first,
    /// then the rows it keeps are scanned exactly (few) or walked in the
    /// graph (many); a broad one is applied to over-fetched candidates of
    /// the graph. `EXPLAIN ANALYZE` shows `filter_rows`, the rows a filter
    /// evaluated first kept.
    Filtered,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Path::Hnsw => "hnsw",
            Path::Exact => "exact",
            Path::Mixed => "mixed",
            Path::Filtered => "filtered",
        })
    }
}

/// A residual filter prepared to read only the columns it references.
struct ResidualFilter {
    /// The collection's columns it reads, as `rows_batch` takes them.
    projection: Vec<usize>,
    schema: SchemaRef,
    expr: Arc<dyn PhysicalExpr>,
}

/// The live rows of the records a search returned, in its order.
fn live_rows(collection: &Collection, hits: &[(Distance, RecordId)]) -> Result<Vec<usize>> {
    hits.iter()
        .map(|(_, id)| {
            collection.row_of(*id).map(|r| r as usize).ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "search returned id {} that has no live row",
                    id.0
                ))
            })
        })
        .collect()
}

/// The path `Collection::search` takes for `k` rows of `tag`: the same
/// test it applies (kept beside it so EXPLAIN tells the truth; a test
/// checks the two agree through the results).
fn engine_path(collection: &Collection, k: usize, tag: Option<u64>, exact: bool) -> Path {
    let Some(tag) = collection.search_tag(tag) else {
        return Path::Exact;
    };
    let live = collection.live() as u64;
    let matching = tag.map_or(live, |t| collection.tag_count(t));
    if exact
        || collection.index().is_empty()
        || matching <= k as u64
        || matching.saturating_mul(FILTER_EXACT_RATIO) <= live
    {
        Path::Exact
    } else {
        Path::Hnsw
    }
}

/// A search as one execution runs it.
struct Resolved {
    query: Vec<i32>,
    tags: TagSet,
    settings: SearchSettings,
    /// The residual filter, its placeholders bound.
    residual: Option<Arc<dyn PhysicalExpr>>,
    /// Lookups of its conjuncts on indexed columns.
    index: Option<RowSource>,
}

/// The rows of one collection nearest to a vector: see the
/// [module documentation](super). One partition; its rows come in
/// `(distance, id)` order with their rank (0, 1, …), which the output
/// ordering declares.
#[derive(Debug)]
pub struct ValoriKnnExec {
    engine: Arc<Engine>,
    search: KnnSearch,
    residual: Option<Arc<dyn PhysicalExpr>>,
    /// A residual filter with placeholders (`category = $1`), over the
    /// scan's columns: planned at each execution with the values bound,
    /// so that the statement's plan is made once.
    deferred: Option<(Expr, DFSchemaRef)>,
    /// Lookups of the residual's conjuncts on indexed columns.
    index: Option<RowSource>,
    /// The table columns the node emits (the residual's input).
    scan_schema: SchemaRef,
    schema: SchemaRef,
    /// The path as planned (for EXPLAIN).
    path: Option<Path>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl ValoriKnnExec {
    pub fn try_new(
        engine: Arc<Engine>,
        search: KnnSearch,
        residual: Option<Arc<dyn PhysicalExpr>>,
        scan_schema: SchemaRef,
        schema: SchemaRef,
    ) -> Result<ValoriKnnExec> {
        Self::with_filter(engine, search, residual, None, scan_schema, schema)
    }

    /// [`ValoriKnnExec::try_new`] with a residual filter that is either
    /// planned (`residual`) or, holding placeholders, planned at each
    /// execution (`deferred`: the logical expression over the scan's
    /// columns).
    fn with_filter(
        engine: Arc<Engine>,
        search: KnnSearch,
        residual: Option<Arc<dyn PhysicalExpr>>,
        deferred: Option<(Expr, DFSchemaRef)>,
        scan_schema: SchemaRef,
        schema: SchemaRef,
    ) -> Result<ValoriKnnExec> {
        let filtered = residual.is_some() || deferred.is_some();
        let rank = schema.index_of(RANK_COLUMN)?;
        let ordering = [PhysicalSortExpr::new(
            Arc::new(Column::new(RANK_COLUMN, rank)),
            SortOptions {
                descending: false,
                nulls_first: false,
            },
        )];
        let properties = PlanProperties::new(
            EquivalenceProperties::new_with_orderings(Arc::clone(&schema), [ordering]),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        let path = engine
            .read(|state| {
                let collection = state
                    .collection(&search.collection)
                    .filter(|c| c.incarnation() == search.incarnation)?;
                let exact = search.settings.exact;
                let paths: Vec<Path> = match &search.tags {
                    TagSet::Any => vec![engine_path(collection, search.k, None, exact)],
                    TagSet::Only(tags) => tags
                        .iter()
                        .map(|&t| engine_path(collection, search.k, Some(t), exact))
                        .collect(),
                };
                Some(match paths.split_first() {
                    None => Path::Exact,
                    // Every row the filter keeps is one the tags allow: a
                    // search exact for the tags stays exact.
                    _ if paths.iter().all(|p| *p == Path::Exact) => Path::Exact,
                    Some(_) if filtered => Path::Filtered,
                    Some((first, rest)) if rest.iter().all(|p| p == first) => *first,
                    Some(_) => Path::Mixed,
                })
            })
            .ok()
            .flatten();
        Ok(ValoriKnnExec {
            engine,
            search,
            residual,
            deferred,
            index: None,
            scan_schema,
            schema,
            path,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// The row source of the residual filter's conjuncts on indexed
    /// columns: the prefilter then evaluates the filter on the rows the
    /// indexes give instead of on every row.
    /// Kept only when the table's indexes answer it.
    pub fn with_index(mut self, index: Option<RowSource>) -> ValoriKnnExec {
        self.index = index.filter(|source| {
            self.engine
                .read(|state| {
                    state
                        .collection(&self.search.collection)
                        .filter(|c| c.incarnation() == self.search.incarnation)
                        .is_some_and(|c| source.answerable(c))
                })
                .unwrap_or(false)
        });
        self
    }

    pub fn search(&self) -> &KnnSearch {
        &self.search
    }

    /// The path as planned; `None` if the collection was gone.
    pub fn path(&self) -> Option<Path> {
        self.path
    }

    /// What this execution searches for: the planned search with its
    /// placeholders bound from the task's [`BoundParams`] and the
    /// session's search settings as they are now (a prepared plan outlives
    /// a `SET valori.ef_search`).
    fn resolve(&self, context: &TaskContext) -> Result<Resolved> {
        let config = context.session_config();
        let settings = config
            .options()
            .extensions
            .get::<ValoriOptions>()
            .map_or(self.search.settings, SearchSettings::from);
        let params = config.get_extension::<BoundParams>();
        let value = |id: &str| -> Result<ScalarValue> {
            params
                .as_ref()
                .and_then(|p| p.get(id).cloned())
                .ok_or_else(|| {
                    DataFusionError::Plan(format!("no value bound for placeholder {id}"))
                })
        };
        let query = match &self.search.query {
            QueryVector::Given(v) => v.clone(),
            QueryVector::Param { id, argument } => {
                let given = value(id)?;
                constant_vector(&given, self.search.function, *argument)?.ok_or_else(|| {
                    DataFusionError::Plan(format!(
                        "{}: the query vector {id} is NULL",
                        self.search.function
                    ))
                })?
            }
        };
        let mut tags = self.search.tags.clone();
        for id in &self.search.tag_params {
            let given = value(id)?;
            // A NULL or negative tag equals no row's tag.
            let tag = u64_literal(&given);
            tags = tags.intersect(&TagSet::of(tag));
        }
        let (residual, index) = match &self.deferred {
            None => (self.residual.clone(), self.index.clone()),
            Some((expr, schema)) => {
                let bound = expr
                    .clone()
                    .transform(|e| match e {
                        Expr::Placeholder(p) => {
                            let mut given = value(&p.id)?;
                            if let Some(field) = &p.field
                                && given.data_type() != *field.data_type()
                            {
                                given = given.cast_to(field.data_type())?;
                            }
                            Ok(Transformed::yes(Expr::Literal(given, None)))
                        }
                        other => Ok(Transformed::no(other)),
                    })?
                    .data;
                let physical = create_physical_expr(
                    &bound,
                    schema,
                    &ExecutionProps::new(),
                    &PhysicalPlanningContext::default(),
                )?;
                let index = RowSource::of_filters(split_conjunction(&bound));
                (Some(physical), index)
            }
        };
        Ok(Resolved {
            query,
            tags,
            settings,
            residual,
            index,
        })
    }

    /// One engine search (one per tag of a tag set, merged): the `fetch`
    /// nearest rows allowed by the tags, in `(distance, id)` order.
    fn candidates(
        &self,
        collection: &Collection,
        fetch: usize,
        resolved: &Resolved,
    ) -> Vec<(Distance, RecordId)> {
        let options = |tag: Option<u64>| SearchOptions {
            ef: resolved.settings.effective_ef(fetch),
            exact: resolved.settings.exact,
            tag,
        };
        let query = &resolved.query;
        match &resolved.tags {
            TagSet::Any => collection.search(query, fetch, &options(None)),
            TagSet::Only(tags) => {
                let mut hits: Vec<(Distance, RecordId)> = Vec::new();
                for &tag in tags {
                    if collection.tag_count(tag) > 0 {
                        hits.extend(collection.search(query, fetch, &options(Some(tag))));
                    }
                }
                hits.sort_unstable();
                hits.truncate(fetch);
                hits
            }
        }
    }

    /// The answer, under one read lock: candidates, the residual filter,
    /// more candidates while too few pass, then the distance and rank.
    fn answer(
        &self,
        candidates_metric: &Count,
        filter_rows_metric: &Count,
        resolved: &Resolved,
    ) -> Result<RecordBatch> {
        let k = self.search.k;
        let read = self.engine.read(|state| -> Result<RecordBatch> {
            let collection = state
                .collection(&self.search.collection)
                .filter(|c| c.incarnation() == self.search.incarnation)
                .ok_or_else(|| ScanError::CollectionChanged(self.search.collection.clone()))?;
            // A bound query vector is checked here, after the collection
            // is known to be the one the plan was made for (a kept plan
            // for a re-created table reports that, not a dimension). No
            // row, no distance to compute: an empty table answers
            // nothing, whatever the query's dimension (as Postgres does;
            // a vector column declared without a dimension has none
            // before its first row).
            if collection.live() == 0 {
                return self.finish(
                    collection,
                    rows_batch(collection, &[], &self.search.projection, &self.scan_schema)?,
                    &[],
                    &resolved.query,
                );
            }
            if resolved.query.len() != collection.dim() {
                return Err(DataFusionError::Plan(format!(
                    "{}: the query vector has {} dimensions; collection {} has {}",
                    self.search.function,
                    resolved.query.len(),
                    self.search.collection,
                    collection.dim()
                )));
            }
            let matching: u64 = match &resolved.tags {
                TagSet::Any => collection.live() as u64,
                TagSet::Only(tags) => tags.iter().map(|&t| collection.tag_count(t)).sum(),
            };
            let matching = usize::try_from(matching).unwrap_or(usize::MAX);
            if let Some(residual) = &resolved.residual
                && let Some(allowed) = self.prefilter(
                    collection,
                    residual,
                    resolved.index.as_ref(),
                    &resolved.tags,
                    matching,
                )?
            {
                let options = SearchOptions {
                    ef: resolved.settings.effective_ef(k),
                    exact: resolved.settings.exact,
                    tag: None,
                };
                filter_rows_metric.add(allowed.len());
                let hits = collection.search_among(&resolved.query, k, &options, &allowed);
                candidates_metric.add(hits.len());
                let rows = live_rows(collection, &hits)?;
                let batch = rows_batch(
                    collection,
                    &rows,
                    &self.search.projection,
                    &self.scan_schema,
                )?;
                return self.finish(collection, batch, &rows, &resolved.query);
            }
            let mut fetch = match resolved.residual {
                Some(_) => k.saturating_mul(OVERFETCH_FACTOR),
                None => k,
            }
            .min(matching);
            loop {
                let hits = self.candidates(collection, fetch, resolved);
                candidates_metric.add(hits.len());
                let rows = live_rows(collection, &hits)?;
                let mut batch = rows_batch(
                    collection,
                    &rows,
                    &self.search.projection,
                    &self.scan_schema,
                )?;
                let mut kept = rows;
                if let Some(residual) = &resolved.residual {
                    let mask = residual.evaluate(&batch)?.into_array(batch.num_rows())?;
                    let mask: BooleanArray = mask
                        .as_boolean_opt()
                        .ok_or_else(|| {
                            DataFusionError::Internal(format!("filter {residual} is not boolean"))
                        })?
                        .iter()
                        .map(|v| Some(v == Some(true)))
                        .collect();
                    batch = filter_record_batch(&batch, &mask)?;
                    kept = kept
                        .into_iter()
                        .zip(mask.values().iter())
                        .filter_map(|(row, keep)| keep.then_some(row))
                        .collect();
                }
                // Every row the tags allow has been a candidate once
                // `fetch` reaches their number: the engine then scans them
                // all exactly, so nothing more can pass.
                if kept.len() >= k || fetch >= matching {
                    let n = kept.len().min(k);
                    return self.finish(collection, batch.slice(0, n), &kept[..n], &resolved.query);
                }
                fetch = fetch.saturating_mul(OVERFETCH_FACTOR).min(matching);
            }
        });
        read.map_err(ScanError::from)?
    }

    /// The rows a selective residual filter keeps, among the live rows
    /// the tags allow, in row order; `None` when the filter is not
    /// selective. The filter is first evaluated on a sample: one that
    /// keeps at least one sampled row in [`OVERFETCH_FACTOR`] is expected
    /// to fill `k` from the first candidates, and is applied to candidates
    /// instead (`None`). A more selective one is evaluated on every row,
    /// and the search then runs over exactly the rows it keeps (exact when
    /// they are few, a filtered graph walk otherwise), so a query for `k`
    /// rows finds the nearest of them whatever the selectivity, instead of
    /// walking the graph past rows the filter rejects.
    fn prefilter(
        &self,
        collection: &Collection,
        residual: &Arc<dyn PhysicalExpr>,
        index: Option<&RowSource>,
        tags: &TagSet,
        matching: usize,
    ) -> Result<Option<Vec<u32>>> {
        let residual = &self.residual_filter(residual)?;
        let deleted = collection.deleted();
        let row_tags = collection.tags();
        // A table's rows with a NULL vector are never candidates.
        let eligible = |r: usize| {
            !deleted[r]
                && collection.has_vector(r)
                && match tags {
                    TagSet::Any => true,
                    TagSet::Only(t) => t.binary_search(&row_tags[r]).is_ok(),
                }
        };
        // The rows the indexes give for the filter's conjuncts on
        // indexed columns (a superset of those it keeps), or every row.
        let candidates: Vec<u32> = match index.and_then(|s| s.rows(collection)) {
            Some(rows) => rows.into_iter().filter(|&r| eligible(r as usize)).collect(),
            None => (0..collection.rows())
                .filter(|&r| eligible(r))
                .map(|r| r as u32)
                .collect(),
        };
        if candidates.len() <= SELECTIVITY_SAMPLE_ROWS {
            // Small enough to evaluate whole at once.
            let keep = self.evaluate_on(collection, residual, &candidates)?;
            return Ok(Some(keep));
        }
        let stride = candidates.len().div_ceil(SELECTIVITY_SAMPLE_ROWS);
        let sample: Vec<u32> = candidates.iter().step_by(stride).copied().collect();
        let passed = self.evaluate_on(collection, residual, &sample)?.len();
        // The rows expected to pass, passed / sample of the candidates,
        // against the rows a search would walk past.
        let expected = passed as u128 * candidates.len() as u128;
        let walked = sample.len() as u128 * matching.max(candidates.len()) as u128;
        if expected * OVERFETCH_FACTOR as u128 >= walked {
            return Ok(None);
        }
        let mut keep = Vec::new();
        for chunk in candidates.chunks(PREFILTER_CHUNK_ROWS) {
            keep.extend(self.evaluate_on(collection, residual, chunk)?);
        }
        Ok(Some(keep))
    }

    /// The rows of `rows` for which `filter` is true.
    fn evaluate_on(
        &self,
        collection: &Collection,
        filter: &ResidualFilter,
        rows: &[u32],
    ) -> Result<Vec<u32>> {
        let positions: Vec<usize> = rows.iter().map(|&r| r as usize).collect();
        let batch = rows_batch(collection, &positions, &filter.projection, &filter.schema)?;
        let mask = filter.expr.evaluate(&batch)?.into_array(batch.num_rows())?;
        let mask = mask.as_boolean_opt().ok_or_else(|| {
            DataFusionError::Internal(format!("filter {} is not boolean", filter.expr))
        })?;
        Ok(rows
            .iter()
            .zip(mask.iter())
            .filter_map(|(&row, keep)| (keep == Some(true)).then_some(row))
            .collect())
    }

    /// `residual` over only the columns it references, to be evaluated on
    /// rows read with that projection.
    fn residual_filter(&self, residual: &Arc<dyn PhysicalExpr>) -> Result<ResidualFilter> {
        let mut used: Vec<usize> = collect_columns(residual)
            .iter()
            .map(Column::index)
            .collect();
        used.sort_unstable();
        used.dedup();
        let schema = Arc::new(self.scan_schema.project(&used)?);
        let projection = used.iter().map(|&i| self.search.projection[i]).collect();
        let expr = reassign_expr_columns(Arc::clone(residual), &schema)?;
        Ok(ResidualFilter {
            projection,
            schema,
            expr,
        })
    }

    /// Appends the distance (the function's value, as the UDF computes
    /// it) and the rank to the chosen rows.
    fn finish(
        &self,
        collection: &Collection,
        batch: RecordBatch,
        rows: &[usize],
        query: &[i32],
    ) -> Result<RecordBatch> {
        let kernel = collection.kernel_for(query);
        let distances: Float64Array = rows
            .iter()
            .map(|&row| {
                Some(
                    self.search
                        .function
                        .evaluate(kernel, query, collection.vector(row)),
                )
            })
            .collect();
        let ranks = UInt64Array::from_iter_values(0..rows.len() as u64);
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns.push(Arc::new(distances));
        columns.push(Arc::new(ranks));
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &options,
        )?)
    }
}

impl DisplayAs for ValoriKnnExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let s = &self.search;
        let ef = s.settings.effective_ef(s.k);
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(
                    f,
                    "ValoriKnnExec: collection={} k={} ef={}",
                    s.collection, s.k, ef
                )?;
                if s.tags != TagSet::Any {
                    write!(f, " tag={}", s.tags)?;
                }
                for id in &s.tag_params {
                    write!(f, " tag={id}")?;
                }
                if let QueryVector::Param { id, .. } = &s.query {
                    write!(f, " query={id}")?;
                }
                match self.path {
                    Some(path) => write!(f, " path={path}")?,
                    None => write!(f, " path=unknown")?,
                }
                write!(f, " distance={}", s.function)?;
                if let Some(residual) = &self.residual {
                    write!(f, " filter={residual}")?;
                }
                if let Some((expr, _)) = &self.deferred {
                    write!(f, " filter={expr}")?;
                }
                if let Some(index) = &self.index {
                    write!(f, " index=[{index}]")?;
                }
                Ok(())
            }
            DisplayFormatType::TreeRender => {
                writeln!(f, "collection={}", s.collection)?;
                writeln!(f, "k={} ef={}", s.k, ef)?;
                match self.path {
                    Some(path) => write!(f, "path={path}"),
                    None => write!(f, "path=unknown"),
                }
            }
        }
    }
}

impl ExecutionPlan for ValoriKnnExec {
    fn name(&self) -> &'static str {
        "ValoriKnnExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        apply_expression_roots(self.residual.iter(), f)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return Err(DataFusionError::Internal(
                "ValoriKnnExec has no children".to_owned(),
            ));
        }
        Ok(self)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "ValoriKnnExec has one partition, not {partition}"
            )));
        }
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let candidates = MetricBuilder::new(&self.metrics).counter("candidates", partition);
        let timer = baseline.elapsed_compute().timer();
        let resolved = self.resolve(&context)?;
        let filter_rows = MetricBuilder::new(&self.metrics).counter("filter_rows", partition);
        let batch = self.answer(&candidates, &filter_rows, &resolved)?;
        timer.done();
        baseline.record_output(batch.num_rows());
        baseline.done();
        Ok(Box::pin(MemoryStream::try_new(
            vec![batch],
            Arc::clone(&self.schema),
            None,
        )?))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// Plans [`KnnNode`]s as [`ValoriKnnExec`]s.
#[derive(Debug, Default)]
pub struct KnnPlanner;

#[async_trait]
impl ExtensionPlanner for KnnPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        _physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<KnnNode>() else {
            return Ok(None);
        };
        // A filter with placeholders is planned at each execution, with
        // the values bound: the rest of the plan is made once.
        // (Not one with a subquery, which only the planner plans.)
        let placeholders = node.residual.as_ref().is_some_and(|r| {
            let has = |f: fn(&Expr) -> bool| r.exists(|e| Ok(f(e))).unwrap_or(true);
            has(|e| matches!(e, Expr::Placeholder(_)))
                && !has(|e| {
                    matches!(
                        e,
                        Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
                    )
                })
        });
        let (residual, deferred) = match &node.residual {
            Some(expr) if placeholders => {
                (None, Some((expr.clone(), Arc::clone(&node.scan_schema))))
            }
            Some(expr) => (
                Some(planner.create_physical_expr(
                    expr,
                    &node.scan_schema,
                    session,
                    planning_ctx,
                )?),
                None,
            ),
            None => (None, None),
        };
        let index = node
            .residual
            .as_ref()
            .filter(|_| !placeholders)
            .and_then(|r| RowSource::of_filters(split_conjunction(r)));
        Ok(Some(Arc::new(
            ValoriKnnExec::with_filter(
                Arc::clone(&node.engine),
                node.search.clone(),
                residual,
                deferred,
                Arc::clone(node.scan_schema.inner()),
                Arc::clone(node.schema.inner()),
            )?
            .with_index(index),
        )))
    }
}

/// DataFusion's physical planner with [`KnnPlanner`].
#[derive(Debug, Default)]
pub struct ValoriQueryPlanner;

#[async_trait]
impl QueryPlanner for ValoriQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![
            Arc::new(KnnPlanner),
            Arc::new(crate::correlated::CorrelatedPlanner),
        ])
        .create_physical_plan(logical_plan, session)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the path names EXPLAIN prints.
    #[test]
    fn paths_display() {
        assert_eq!(Path::Hnsw.to_string(), "hnsw");
        assert_eq!(Path::Exact.to_string(), "exact");
        assert_eq!(Path::Mixed.to_string(), "mixed");
    }
}
