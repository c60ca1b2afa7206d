//! Correlated scalar subqueries that DataFusion cannot turn into joins —
//! a correlation other than equality (`WHERE a.x < c.y`, `oid = ANY
//! (c.list)`), or one under `CASE` — evaluated once per outer row, as
//! Postgres evaluates a subplan. Catalog queries of psql's `\d` and of
//! database tools are written this way.
//!
//! - [`CorrelatedRule`] (a logical optimizer rule, after DataFusion's own
//!   decorrelation) takes each scalar subquery left in a projection or a
//!   filter out of its expression, into a [`CorrelatedNode`] under it
//!   that appends the subquery's value as a column, which the expression
//!   then reads.
//! - [`CorrelatedExec`] evaluates the subqueries for every row of its
//!   input: the outer columns a subquery reads are replaced by the row's
//!   values, and the subquery is planned and run like any query (so a
//!   subquery may itself be a KNN search). More than one row is an error
//!   (SQLSTATE `21000`, as Postgres); no row is NULL.
//!
//! `generate_series` called with an outer column (`FROM generate_series(1,
//! array_upper(outer.list, 1))` inside such a subquery) is planned as a
//! [`LateralSeries`] that per-row evaluation replaces by the series of the
//! row's values; called with constants it is DataFusion's own.
//!
//! Per-row evaluation costs a plan per row: it is bounded by
//! [`CORRELATED_ROWS_MAX`] outer rows, past which the query fails and
//! names the limit (rewrite it as a join).

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{
    Column, DFSchema, DFSchemaRef, DataFusionError, Result, ScalarValue, internal_err,
};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::execution::context::SessionState;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::functions_table::generate_series::GenerateSeriesFunc;
use datafusion::logical_expr::{
    Expr, ExprSchemable, Extension, Filter, LogicalPlan, Projection, Subquery,
    UserDefinedLogicalNode, UserDefinedLogicalNodeCore, lit,
};
use datafusion::logical_expr::{TableScan, TableScanBuilder, TableType};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PhysicalExpr, PlanProperties,
    collect,
};
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use futures::StreamExt;

/// Outer rows a correlated subquery is evaluated for, at most, per query.
pub const CORRELATED_ROWS_MAX: usize = 2_000;

/// The name of the column holding subquery `i`'s value.
fn value_column(i: usize) -> String {
    format!("__valori_subquery_{i}")
}

/// See the [module documentation](self).
#[derive(Debug, Default)]
pub struct CorrelatedRule;

impl OptimizerRule for CorrelatedRule {
    fn name(&self) -> &str {
        "valori_correlated_subquery"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        match plan {
            LogicalPlan::Projection(p) if p.expr.iter().any(has_subquery) => {
                let mut found = Vec::new();
                let exprs = p
                    .expr
                    .into_iter()
                    .map(|e| take_subqueries(e, &mut found))
                    .collect::<Result<Vec<_>>>()?;
                // Each output keeps its name (and qualifier), which
                // DataFusion derives from the expression.
                let exprs = exprs
                    .into_iter()
                    .zip(p.schema.iter())
                    .map(|(e, (qualifier, field))| {
                        if e.schema_name().to_string() == *field.name() {
                            e
                        } else {
                            e.alias_qualified(qualifier.cloned(), field.name())
                        }
                    })
                    .collect();
                let input = CorrelatedNode::plan(Arc::unwrap_or_clone(p.input), found)?;
                let projection = Projection::try_new(exprs, Arc::new(input))?;
                Ok(Transformed::yes(LogicalPlan::Projection(projection)))
            }
            LogicalPlan::Filter(f) if has_subquery(&f.predicate) => {
                let mut found = Vec::new();
                let predicate = take_subqueries(f.predicate, &mut found)?;
                let outer = f.input.schema().columns();
                let input = CorrelatedNode::plan(Arc::unwrap_or_clone(f.input), found)?;
                let filter = Filter::try_new(predicate, Arc::new(input))?;
                // Above the filter, the value columns are dropped again.
                let columns = outer.into_iter().map(Expr::Column).collect();
                let projection =
                    Projection::try_new(columns, Arc::new(LogicalPlan::Filter(filter)))?;
                Ok(Transformed::yes(LogicalPlan::Projection(projection)))
            }
            other => Ok(Transformed::no(other)),
        }
    }
}

fn has_subquery(e: &Expr) -> bool {
    e.exists(|e| Ok(matches!(e, Expr::ScalarSubquery(_))))
        .unwrap_or(false)
}

/// `e` with each scalar subquery replaced by its value column, the
/// subqueries appended to `found`.
fn take_subqueries(e: Expr, found: &mut Vec<Subquery>) -> Result<Expr> {
    e.transform_up(|e| match e {
        Expr::ScalarSubquery(subquery) => {
            let name = value_column(found.len());
            found.push(subquery);
            Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
                name,
            ))))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// Its input's columns, then one value column per subquery.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CorrelatedNode {
    input: LogicalPlan,
    subqueries: Vec<Subquery>,
    schema: DFSchemaRef,
}

impl CorrelatedNode {
    fn plan(input: LogicalPlan, subqueries: Vec<Subquery>) -> Result<LogicalPlan> {
        let schema = Self::schema_of(&input, &subqueries)?;
        Ok(LogicalPlan::Extension(Extension {
            node: Arc::new(CorrelatedNode {
                input,
                subqueries,
                schema,
            }),
        }))
    }

    fn schema_of(input: &LogicalPlan, subqueries: &[Subquery]) -> Result<DFSchemaRef> {
        let mut fields: Vec<(Option<datafusion::common::TableReference>, Arc<Field>)> = input
            .schema()
            .iter()
            .map(|(q, f)| (q.cloned(), Arc::clone(f)))
            .collect();
        for (i, subquery) in subqueries.iter().enumerate() {
            let out = subquery.subquery.schema();
            if out.fields().len() != 1 {
                return datafusion::common::plan_err!(
                    "a subquery used as an expression returns {} columns; it must return one",
                    out.fields().len()
                );
            }
            let field = Field::new(value_column(i), out.field(0).data_type().clone(), true);
            fields.push((None, Arc::new(field)));
        }
        let schema = DFSchema::new_with_metadata(fields, input.schema().metadata().clone())?;
        Ok(Arc::new(schema))
    }
}

impl fmt::Debug for CorrelatedNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        UserDefinedLogicalNodeCore::fmt_for_explain(self, f)
    }
}

impl PartialOrd for CorrelatedNode {
    /// Nodes are only ordered when equal: DataFusion requires the trait of
    /// extension nodes but never needs to order two different ones.
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (self == other).then_some(Ordering::Equal)
    }
}

impl UserDefinedLogicalNodeCore for CorrelatedNode {
    fn name(&self) -> &str {
        "CorrelatedSubquery"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn prevent_predicate_push_down_columns(&self) -> HashSet<String> {
        (0..self.subqueries.len()).map(value_column).collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "CorrelatedSubquery: {} subquer{} evaluated per row",
            self.subqueries.len(),
            if self.subqueries.len() == 1 {
                "y"
            } else {
                "ies"
            }
        )
    }

    fn with_exprs_and_inputs(
        &self,
        exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        if !exprs.is_empty() || inputs.len() != 1 {
            return internal_err!("CorrelatedSubquery takes one input and no expressions");
        }
        let input = inputs.remove(0);
        let schema = Self::schema_of(&input, &self.subqueries)?;
        Ok(CorrelatedNode {
            input,
            subqueries: self.subqueries.clone(),
            schema,
        })
    }
}

/// Plans a [`CorrelatedNode`] as a [`CorrelatedExec`].
#[derive(Debug)]
pub struct CorrelatedPlanner;

#[async_trait]
impl ExtensionPlanner for CorrelatedPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        _planning_ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<CorrelatedNode>() else {
            return Ok(None);
        };
        let Some(state) = session.as_any().downcast_ref::<SessionState>() else {
            return internal_err!("a correlated subquery needs the session's state to plan");
        };
        let [input] = physical_inputs else {
            return internal_err!("CorrelatedSubquery takes one input");
        };
        let outer = node.input.schema();
        let subqueries = node
            .subqueries
            .iter()
            .map(|s| {
                let mut refs = s.outer_ref_columns.clone();
                refs.extend(lateral_series_refs(&s.subquery)?);
                let mut columns: Vec<(Column, usize)> = Vec::new();
                for e in refs {
                    let Expr::OuterReferenceColumn(_, c) = e else {
                        return internal_err!("outer reference {e} is not a column");
                    };
                    if !columns.iter().any(|(known, _)| *known == c) {
                        let index = outer.index_of_column(&c)?;
                        columns.push((c, index));
                    }
                }
                Ok(PlannedSubquery {
                    plan: Arc::clone(&s.subquery),
                    columns,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let schema: SchemaRef = Arc::new(node.schema.as_arrow().clone());
        Ok(Some(Arc::new(CorrelatedExec::new(
            Arc::clone(input),
            subqueries,
            Box::new(state.clone()),
            schema,
        ))))
    }
}

#[derive(Clone, Debug)]
struct PlannedSubquery {
    plan: Arc<LogicalPlan>,
    /// The outer columns it reads, with their index in the input.
    columns: Vec<(Column, usize)>,
}

/// See the [module documentation](self).
#[derive(Debug)]
pub struct CorrelatedExec {
    input: Arc<dyn ExecutionPlan>,
    subqueries: Vec<PlannedSubquery>,
    state: Box<SessionState>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl CorrelatedExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        subqueries: Vec<PlannedSubquery>,
        state: Box<SessionState>,
        schema: SchemaRef,
    ) -> CorrelatedExec {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(input.properties().partitioning.partition_count()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        CorrelatedExec {
            input,
            subqueries,
            state,
            schema,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for CorrelatedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "CorrelatedSubqueryExec: subqueries={}",
            self.subqueries.len()
        )
    }
}

impl ExecutionPlan for CorrelatedExec {
    fn name(&self) -> &'static str {
        "CorrelatedSubqueryExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    /// The subqueries are logical plans, planned per row: no physical
    /// expression to visit.
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!("CorrelatedSubqueryExec takes one input");
        }
        Ok(Arc::new(CorrelatedExec::new(
            children.remove(0),
            self.subqueries.clone(),
            self.state.clone(),
            Arc::clone(&self.schema),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut input = self.input.execute(partition, Arc::clone(&context))?;
        let subqueries = self.subqueries.clone();
        let state = self.state.clone();
        let schema = Arc::clone(&self.schema);
        // The outer rows are counted before any is evaluated, so a query
        // over too many fails at once rather than after planning
        // thousands of subqueries.
        let answer = async move {
            let mut batches = Vec::new();
            let mut rows = 0usize;
            while let Some(batch) = input.next().await {
                let batch = batch?;
                rows = rows.saturating_add(batch.num_rows());
                if rows > CORRELATED_ROWS_MAX {
                    return Err(DataFusionError::NotImplemented(format!(
                        "a correlated subquery that cannot be joined is evaluated once per row, \
                         for at most {CORRELATED_ROWS_MAX} rows; this query has more (rewrite \
                         the subquery as a join)"
                    )));
                }
                batches.push(batch);
            }
            let mut out = Vec::with_capacity(batches.len());
            for batch in batches {
                let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
                for subquery in &subqueries {
                    let mut values = Vec::with_capacity(batch.num_rows());
                    for row in 0..batch.num_rows() {
                        values.push(evaluate(subquery, &batch, row, &state, &context).await?);
                    }
                    let field = schema.field(columns.len());
                    columns.push(if values.is_empty() {
                        datafusion::arrow::array::new_empty_array(field.data_type())
                    } else {
                        ScalarValue::iter_to_array(values)?
                    });
                }
                out.push(Ok(RecordBatch::try_new(Arc::clone(&schema), columns)?));
            }
            Ok(futures::stream::iter(out))
        };
        let stream = futures::stream::once(answer).map(|r| match r {
            Ok(batches) => batches.left_stream(),
            Err(e) => futures::stream::iter(vec![Err(e)]).right_stream(),
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream.flatten(),
        )))
    }
}

/// Subquery `s` with the outer columns of `row` of `batch`: its only
/// value, or NULL when it returns no row.
async fn evaluate(
    s: &PlannedSubquery,
    batch: &RecordBatch,
    row: usize,
    state: &SessionState,
    context: &Arc<TaskContext>,
) -> Result<ScalarValue> {
    let values = s
        .columns
        .iter()
        .map(|(c, i)| {
            Ok((
                c.clone(),
                ScalarValue::try_from_array(batch.column(*i), row)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let bind = |e: Expr| {
        e.transform_up(|e| match &e {
            Expr::OuterReferenceColumn(_, c) => match values.iter().find(|(outer, _)| outer == c) {
                Some((_, v)) => Ok(Transformed::yes(lit(v.clone()))),
                None => Ok(Transformed::no(e)),
            },
            _ => Ok(Transformed::no(e)),
        })
    };
    let bound = Arc::unwrap_or_clone(Arc::clone(&s.plan))
        .transform_up_with_subqueries(|plan| {
            let plan = match plan {
                LogicalPlan::TableScan(scan) => match lateral(&scan) {
                    Some((series, schema, kind)) => {
                        let args = series
                            .iter()
                            .map(|a| bind(a.clone()).map(|t| t.data))
                            .collect::<Result<Vec<_>>>()?;
                        let provider = match (kind, args.as_slice()) {
                            (LateralKind::Unnest, [arg]) => unnest_table(arg, schema, state)?,
                            _ => GenerateSeriesFunc {}
                                .call_with_args(TableFunctionArgs::new(&args, state))?,
                        };
                        let scan = TableScanBuilder::new(
                            scan.table_name.clone(),
                            provider_as_source(provider),
                        )
                        .with_projection(scan.projection.clone())
                        .with_filters(scan.filters.clone())
                        .with_fetch(scan.fetch)
                        .build()?;
                        Transformed::yes(LogicalPlan::TableScan(scan))
                    }
                    None => Transformed::no(LogicalPlan::TableScan(scan)),
                },
                other => Transformed::no(other),
            };
            // An expression keeps its name with the values in it: the
            // nodes above read `array_agg(concat(outer_ref(t.v), s.v))`
            // by that name, not by the bound value's.
            plan.transform_data(|plan| {
                let names = datafusion::logical_expr::expr_rewriter::NamePreserver::new(&plan);
                plan.map_expressions(|e| {
                    let saved = names.save(&e);
                    bind(e).map(|t| t.update_data(|e| saved.restore(e)))
                })
            })
        })?
        .data;
    let physical = state.create_physical_plan(&bound).await?;
    let out: Vec<RecordBatch> = collect(physical, Arc::clone(context)).await?;
    let rows: usize = out.iter().map(RecordBatch::num_rows).sum();
    if rows > 1 {
        return Err(DataFusionError::Execution(
            "more than one row returned by a subquery used as an expression".to_owned(),
        ));
    }
    match out.iter().find(|b| b.num_rows() == 1) {
        Some(b) => ScalarValue::try_from_array(b.column(0), 0),
        None => ScalarValue::try_from(s.plan.schema().field(0).data_type()),
    }
}

/// `generate_series`, as DataFusion's, except that arguments reading an
/// outer query's columns give a [`LateralSeries`] instead of an error.
#[derive(Debug, Default)]
pub struct LateralSeriesFunc;

impl TableFunctionImpl for LateralSeriesFunc {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let outer = args.exprs().iter().any(|e| {
            e.exists(|e| Ok(matches!(e, Expr::OuterReferenceColumn(..))))
                .unwrap_or(false)
        });
        if outer {
            return Ok(Arc::new(LateralSeries {
                args: args.exprs().to_vec(),
                schema: Arc::new(Schema::new(vec![Field::new(
                    "value",
                    DataType::Int64,
                    false,
                )])),
                kind: LateralKind::Series,
            }));
        }
        GenerateSeriesFunc {}.call_with_args(args)
    }
}

/// `unnest(array)` called as a table function (`FROM
/// pg_catalog.unnest(a) x`, as psql's `\d+` writes it): the elements of
/// the array, one row each, in order; a NULL array gives no row. An
/// argument reading an outer query's columns gives a [`LateralSeries`]
/// evaluated per outer row, as `generate_series`'s. (Written `FROM
/// unnest(a)` without the schema, it is DataFusion's own `UNNEST`.)
#[derive(Debug, Default)]
pub struct LateralUnnestFunc;

impl TableFunctionImpl for LateralUnnestFunc {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let [arg] = args.exprs() else {
            return datafusion::common::plan_err!(
                "unnest as a table function takes one array argument"
            );
        };
        let element = match arg.get_type(&DFSchema::empty())? {
            DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
                item.data_type().clone()
            }
            DataType::Null => DataType::Utf8,
            other => {
                return datafusion::common::plan_err!(
                    "unnest takes an array, not a value of type {other}"
                );
            }
        };
        let schema = Arc::new(Schema::new(vec![Field::new("value", element, true)]));
        let outer = arg
            .exists(|e| Ok(matches!(e, Expr::OuterReferenceColumn(..))))
            .unwrap_or(false);
        if outer {
            return Ok(Arc::new(LateralSeries {
                args: vec![arg.clone()],
                schema,
                kind: LateralKind::Unnest,
            }));
        }
        unnest_table(arg, schema, args.session())
    }
}

/// The elements of the constant array `arg` as a one-column table.
fn unnest_table(
    arg: &Expr,
    schema: SchemaRef,
    session: &dyn Session,
) -> Result<Arc<dyn TableProvider>> {
    let physical = session.create_physical_expr(arg.clone(), &DFSchema::empty())?;
    let one_row = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        Vec::new(),
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    let value = physical.evaluate(&one_row)?.into_array(1)?;
    let field = schema.field(0);
    let elements: ArrayRef = if value.is_null(0) {
        datafusion::arrow::array::new_empty_array(field.data_type())
    } else {
        match ScalarValue::try_from_array(&value, 0)? {
            ScalarValue::List(list) => list.value(0),
            ScalarValue::LargeList(list) => list.value(0),
            ScalarValue::FixedSizeList(list) => list.value(0),
            other => {
                return internal_err!("unnest of a value that is not an array: {other}");
            }
        }
    };
    let elements = datafusion::arrow::compute::cast(&elements, field.data_type())?;
    let batch = RecordBatch::try_new(Arc::clone(&schema), vec![elements])?;
    Ok(Arc::new(datafusion::datasource::MemTable::try_new(
        schema,
        vec![vec![batch]],
    )?))
}

/// The set-returning function a [`LateralSeries`] stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LateralKind {
    /// `generate_series(…)` of integers.
    Series,
    /// `unnest(array)`.
    Unnest,
}

/// `generate_series(…)` of integers over an outer row's values, known
/// only when the row is: replaced by the series itself when a correlated
/// subquery is evaluated for the row. Scanned anywhere else, it is an
/// error that names what is not supported.
#[derive(Debug)]
pub struct LateralSeries {
    args: Vec<Expr>,
    schema: SchemaRef,
    kind: LateralKind,
}

#[async_trait]
impl TableProvider for LateralSeries {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let function = match self.kind {
            LateralKind::Series => "generate_series",
            LateralKind::Unnest => "unnest",
        };
        Err(DataFusionError::NotImplemented(format!(
            "{function} with an argument from an outer query is supported only inside a \
             subquery used as a value (evaluated per row)"
        )))
    }
}

/// The arguments of the [`LateralSeries`] a scan reads, if it reads one.
fn lateral_series(scan: &TableScan) -> Option<Vec<Expr>> {
    lateral(scan).map(|(args, _, _)| args)
}

/// The arguments, schema and kind of the [`LateralSeries`] a scan reads.
fn lateral(scan: &TableScan) -> Option<(Vec<Expr>, SchemaRef, LateralKind)> {
    let provider = source_as_provider(&scan.source).ok()?;
    provider
        .downcast_ref::<LateralSeries>()
        .map(|series| (series.args.clone(), Arc::clone(&series.schema), series.kind))
}

/// The outer columns the [`LateralSeries`] of `plan` read.
fn lateral_series_refs(plan: &LogicalPlan) -> Result<Vec<Expr>> {
    let mut refs = Vec::new();
    plan.apply_with_subqueries(|p| {
        if let LogicalPlan::TableScan(scan) = p
            && let Some(series) = lateral_series(scan)
        {
            for arg in &series {
                arg.apply(|e| {
                    if matches!(e, Expr::OuterReferenceColumn(..)) {
                        refs.push(e.clone());
                    }
                    Ok(TreeNodeRecursion::Continue)
                })?;
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(refs)
}
