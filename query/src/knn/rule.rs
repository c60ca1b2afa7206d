//! The optimizer rule that puts a [`KnnNode`] where a distance sort was.
//!
//! ```text
//! Sort: d ASC, fetch=k                          Projection: id, tag, __valori_distance AS d
//!   Projection: id, tag, l2(vec_q16, q) AS d      Projection: id, tag, __valori_distance
//!     Filter: tag = 7 AND id > 3           =>       Sort: __valori_rank ASC, fetch=k
//!       TableScan: docs                               ValoriKnn: collection=docs k=k tag=7 filter=id > 3
//! ```
//!
//! Between the sort and the scan, filters, aliases and projections (such
//! as those common-subexpression elimination adds) are looked through:
//! each column and each filter is restated over the scan's columns. The
//! middle projection recomputes the columns the chain had, on the `k`
//! rows only; the sort on the rank keeps the node's order wherever
//! DataFusion's physical optimizer moves things (it sorts rows already in
//! order, and the physical optimizer drops it, since the node declares its
//! ordering); the projection on top gives the plan exactly the schema it
//! had.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, DFSchemaRef, Result};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    BinaryExpr, Expr, Extension, LogicalPlan, Operator, Projection, Sort, SortExpr, TableScan,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use valori_core::distance::Metric;

use super::node::{KnnNode, node_schema};
use super::{DISTANCE_COLUMN, KnnSearch, QueryVector, RANK_COLUMN, TagSet};
use crate::functions::{Argument, DistanceFunction, constant_vector, distance_function_of};
use crate::provider::{CollectionTable, Roles, tag_equality, u64_literal};
use crate::settings::{SearchSettings, ValoriOptions};

/// See the [module documentation](super).
#[derive(Debug, Default)]
pub struct KnnRule;

impl OptimizerRule for KnnRule {
    fn name(&self) -> &str {
        "valori_knn"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Sort(sort) = &plan else {
            return Ok(Transformed::no(plan));
        };
        let settings = config
            .options()
            .extensions
            .get::<ValoriOptions>()
            .map(SearchSettings::from)
            .unwrap_or_default();
        match rewrite_sort(sort, settings)? {
            Some(rewritten) => Ok(Transformed::yes(rewritten)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// `expr` without its aliases.
fn strip(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(alias) => strip(&alias.expr),
        other => other,
    }
}

/// The scan below a chain of filters, aliases and projections (such as
/// the ones common-subexpression elimination adds), with every column of
/// the chain's top and every filter conjunct restated as an expression
/// over the scan's columns.
struct Source<'a> {
    scan: &'a TableScan,
    provider: Arc<dyn TableProvider>,
    /// The chain's top schema: the columns as the expressions above name
    /// them.
    top: DFSchemaRef,
    /// For each column of `top`, its value over the scan's columns.
    columns: Vec<Expr>,
    /// The filters' conjuncts, over the scan's columns.
    predicates: Vec<Expr>,
}

impl Source<'_> {
    /// The table column (index into the table schema) behind `column` of
    /// the scan's output.
    fn scan_column(&self, column: &Column) -> Option<usize> {
        let index = self.scan.projected_schema.index_of_column(column).ok()?;
        match &self.scan.projection {
            Some(projection) => projection.get(index).copied(),
            None => Some(index),
        }
    }
}

fn source(plan: &LogicalPlan) -> Option<Source<'_>> {
    // Down to the scan, remembering the way.
    let mut chain = Vec::new();
    let mut current = plan;
    let scan = loop {
        match current {
            LogicalPlan::Filter(f) => current = f.input.as_ref(),
            LogicalPlan::SubqueryAlias(a) => current = a.input.as_ref(),
            LogicalPlan::Projection(p) => current = p.input.as_ref(),
            LogicalPlan::TableScan(scan) => break scan,
            _ => return None,
        }
        chain.push(current);
    };
    let provider = source_as_provider(&scan.source).ok()?;
    // Back up: each plan's columns over the scan's.
    let mut columns: Vec<Expr> = scan
        .projected_schema
        .iter()
        .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
        .collect();
    let mut predicates = Vec::new();
    let mut below = scan.projected_schema.as_ref();
    // `chain` ends with the scan; the plans above it, bottom up, end with
    // `plan` itself (unless `plan` is the scan).
    let mut above: Vec<&LogicalPlan> = chain.iter().rev().skip(1).copied().collect();
    if !chain.is_empty() {
        above.push(plan);
    }
    for node in above {
        match node {
            LogicalPlan::Filter(f) => {
                for conjunct in split_conjunction(&f.predicate) {
                    predicates.push(substitute(conjunct, below, &columns)?);
                }
            }
            LogicalPlan::Projection(p) => {
                // A volatile value (random()) would be computed once for
                // the filter and again for the output: keep DataFusion's
                // plan, which computes it once.
                if p.expr.iter().any(Expr::is_volatile) {
                    return None;
                }
                columns = p
                    .expr
                    .iter()
                    .map(|e| substitute(strip(e), below, &columns))
                    .collect::<Option<Vec<Expr>>>()?;
            }
            // An alias renames the columns; their values stay.
            LogicalPlan::SubqueryAlias(_) => {}
            _ => return None,
        }
        below = node.schema().as_ref();
    }
    if columns.len() != plan.schema().fields().len() {
        return None;
    }
    Some(Source {
        scan,
        provider,
        top: Arc::clone(plan.schema()),
        columns,
        predicates,
    })
}

/// `expr` over `schema` restated with each column replaced by its value in
/// `columns` (by position in `schema`); `None` if it names a column
/// `schema` lacks or reaches outside the query (subqueries, outer
/// references), which the node cannot evaluate. Placeholders stay: the
/// search binds its vector and tag parameters at execution, and a plan
/// with any other placeholder is planned again with its values bound.
fn substitute(expr: &Expr, schema: &DFSchema, columns: &[Expr]) -> Option<Expr> {
    let outside = expr
        .exists(|e| {
            Ok(matches!(
                e,
                Expr::ScalarSubquery(_)
                    | Expr::InSubquery(_)
                    | Expr::Exists(_)
                    | Expr::OuterReferenceColumn(..)
                    | Expr::AggregateFunction(_)
                    | Expr::WindowFunction(_)
            ))
        })
        .unwrap_or(true);
    if outside || schema.fields().len() != columns.len() {
        return None;
    }
    let mut missing = false;
    let substituted = expr
        .clone()
        .transform(|e| match e {
            Expr::Column(column) => match schema.index_of_column(&column) {
                Ok(index) => Ok(Transformed::yes(strip(&columns[index]).clone())),
                Err(_) => {
                    missing = true;
                    Ok(Transformed::no(Expr::Column(column)))
                }
            },
            other => Ok(Transformed::no(other)),
        })
        .ok()?
        .data;
    (!missing).then_some(substituted)
}

/// A distance function of the table's vector column and a constant.
struct Call {
    function: DistanceFunction,
    query: QueryVector,
}

fn distance_call(
    expr: &Expr,
    resolve: &dyn Fn(&Column) -> Option<usize>,
    dim: usize,
    roles: Roles,
) -> Option<Call> {
    let Expr::ScalarFunction(call) = strip(expr) else {
        return None;
    };
    let function = distance_function_of(&call.func)?;
    let (column, value, argument) = match call.args.as_slice() {
        [Expr::Column(c), v] => (c, strip(v), Argument::Second),
        [v, Expr::Column(c)] => (c, strip(v), Argument::First),
        _ => return None,
    };
    if !roles.is_vector(resolve(column)?) {
        return None;
    }
    let query = match value {
        // A constant the function would reject (or NULL, or of another
        // dimension) keeps DataFusion's plan, which reports it as before.
        Expr::Literal(v, _) => {
            let query = constant_vector(v, function, argument).ok()??;
            if query.len() != dim {
                return None;
            }
            QueryVector::Given(query)
        }
        Expr::Placeholder(p) => QueryVector::Param {
            id: p.id.clone(),
            argument,
        },
        _ => return None,
    };
    Some(Call { function, query })
}

/// The placeholder of a conjunct `tag = $n`.
fn tag_param(
    expr: &Expr,
    resolve: &dyn Fn(&Column) -> Option<usize>,
    tag: Option<usize>,
) -> Option<String> {
    let is_tag =
        |e: &Expr| tag.is_some() && matches!(strip(e), Expr::Column(c) if resolve(c) == tag);
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    }) = strip(expr)
    else {
        return None;
    };
    match (strip(left), strip(right)) {
        (c, Expr::Placeholder(p)) | (Expr::Placeholder(p), c) if is_tag(c) => Some(p.id.clone()),
        _ => None,
    }
}

/// The tags a conjunct allows, when it is only about the tag: `tag = n`,
/// `tag IN (…)`, or a disjunction of those.
fn tag_constraint(
    expr: &Expr,
    resolve: &dyn Fn(&Column) -> Option<usize>,
    tag: Option<usize>,
) -> Option<TagSet> {
    let is_tag =
        |e: &Expr| tag.is_some() && matches!(strip(e), Expr::Column(c) if resolve(c) == tag);
    match strip(expr) {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => match (strip(left), strip(right)) {
            (c, Expr::Literal(v, _)) | (Expr::Literal(v, _), c) if is_tag(c) => {
                Some(TagSet::of([u64_literal(v)?]))
            }
            _ => None,
        },
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let (TagSet::Only(a), TagSet::Only(b)) = (
                tag_constraint(left, resolve, tag)?,
                tag_constraint(right, resolve, tag)?,
            ) else {
                return None;
            };
            Some(TagSet::of(a.into_iter().chain(b)))
        }
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) if is_tag(expr) => {
            let tags = list
                .iter()
                .map(|e| match strip(e) {
                    Expr::Literal(v, _) => u64_literal(v),
                    _ => None,
                })
                .collect::<Option<Vec<u64>>>()?;
            Some(TagSet::of(tags))
        }
        _ => None,
    }
}

/// The rewritten plan for `sort`, or `None` when it is not a KNN query
/// the engine can answer (see the module documentation).
fn rewrite_sort(sort: &Sort, settings: SearchSettings) -> Result<Option<LogicalPlan>> {
    let Some(k) = sort.fetch else {
        return Ok(None);
    };
    let Some((first, rest)) = sort.expr.split_first() else {
        return Ok(None);
    };
    let projection = match sort.input.as_ref() {
        LogicalPlan::Projection(p) => Some(p),
        _ => None,
    };
    let below = projection.map_or(sort.input.as_ref(), |p| p.input.as_ref());
    let Some(source) = source(below) else {
        return Ok(None);
    };
    let Some(table) = source.provider.as_ref().downcast_ref::<CollectionTable>() else {
        return Ok(None);
    };
    if source.scan.fetch.is_some() {
        return Ok(None);
    }
    // The collection's metric and dimension, as planned.
    let facts = table.engine().read(|state| {
        state
            .collection(table.name())
            .filter(|c| c.incarnation() == table.incarnation())
            .map(|c| (c.config().metric, c.dim()))
    });
    let Ok(Some((metric, dim))) = facts else {
        return Ok(None);
    };

    // A sort key's value over the scan's columns: through the projection
    // below the sort (if any), then through the chain down to the scan.
    let over_scan = |key: &Expr| -> Option<Expr> {
        let over_top = match projection {
            Some(p) => substitute(strip(key), &p.schema, &p.expr)?,
            None => strip(key).clone(),
        };
        substitute(&over_top, &source.top, &source.columns)
    };
    let scan_column = |c: &Column| source.scan_column(c);

    // The distance: a distance call of the vector column and a constant,
    // written in the sort key or computed by the projection (possibly as
    // a common subexpression).
    let roles = table.roles();
    let Some(call) =
        over_scan(&first.expr).and_then(|e| distance_call(&e, &scan_column, dim, roles))
    else {
        return Ok(None);
    };
    // The projected column the key names, which the node's distance
    // replaces.
    let replaced = match (strip(&first.expr), projection) {
        (Expr::Column(c), Some(p)) => p.schema.index_of_column(c).ok(),
        _ => None,
    };
    let nearer_first = match call.function {
        DistanceFunction::InnerProduct => !first.asc,
        _ => first.asc,
    };
    let metric_matches = match metric {
        Metric::L2 => matches!(
            call.function,
            DistanceFunction::L2 | DistanceFunction::L2Squared
        ),
        Metric::InnerProduct => matches!(
            call.function,
            DistanceFunction::InnerProduct | DistanceFunction::NegativeInnerProduct
        ),
        Metric::Cosine => call.function == DistanceFunction::CosineDistance,
    };
    let id_tie_break = |s: &SortExpr| {
        s.asc
            && roles.id.is_some()
            && matches!(over_scan(&s.expr), Some(Expr::Column(c)) if scan_column(&c) == roles.id)
    };
    if !nearer_first || !metric_matches || rest.len() > 1 || !rest.iter().all(id_tie_break) {
        return Ok(None);
    }

    // Filters: the scan's own (`tag = n` on a table of the fixed
    // layout; on a declared table, index lookups that the filter above
    // the scan applies again, and that the node takes from its residual)
    // and the rest.
    let mut tags = TagSet::Any;
    for filter in &source.scan.filters {
        match tag_equality(filter) {
            Some(tag) if roles.tag.is_some() => tags = tags.intersect(&TagSet::of([tag])),
            _ if roles.tag.is_none() => {}
            _ => return Ok(None),
        }
    }
    let mut residual = Vec::new();
    let mut tag_params = Vec::new();
    for predicate in &source.predicates {
        let resolve = |c: &Column| source.scan_column(c);
        if let Some(id) = tag_param(predicate, &resolve, roles.tag) {
            tag_params.push(id);
            continue;
        }
        match tag_constraint(predicate, &resolve, roles.tag) {
            Some(set) => tags = tags.intersect(&set),
            None => residual.push(predicate.clone()),
        }
    }

    let distance = || Expr::Column(Column::new_unqualified(DISTANCE_COLUMN));
    // What the query shows: the projection above the sort, its distance
    // column now the node's; or the chain's columns as they were.
    let exprs: Vec<Expr> = match projection {
        Some(p) => p
            .expr
            .iter()
            .enumerate()
            .map(|(i, e)| {
                if Some(i) == replaced {
                    let (qualifier, field) = p.schema.qualified_field(i);
                    distance().alias_qualified(qualifier.cloned(), field.name())
                } else {
                    e.clone()
                }
            })
            .collect(),
        None => source
            .top
            .iter()
            .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
            .collect(),
    };
    // The chain's columns those expressions use, recomputed from the
    // scan's (the same columns unless the chain computed some), and the
    // distance.
    let used: Vec<&Column> = exprs.iter().flat_map(|e| e.column_refs()).collect();
    let mut chain_top: Vec<Expr> = source
        .top
        .iter()
        .zip(&source.columns)
        .filter_map(|((qualifier, field), value)| {
            let same = Column::new(qualifier.cloned(), field.name());
            if !refers_to(&used, &same) {
                return None;
            }
            Some(if *value == Expr::Column(same.clone()) {
                Expr::Column(same)
            } else {
                value
                    .clone()
                    .alias_qualified(qualifier.cloned(), field.name())
            })
        })
        .collect();
    chain_top.push(distance());

    // The node emits only the scan columns the chain's columns and the
    // residual filter read: candidates are materialised row by row, and
    // vectors nobody reads are the bulk of a row.
    let residual = conjunction(residual);
    let mut read: Vec<&Column> = chain_top.iter().flat_map(|e| e.column_refs()).collect();
    if let Some(r) = &residual {
        read.extend(r.column_refs());
    }
    let scan = &source.scan;
    let all: Vec<usize> = match &scan.projection {
        Some(p) => p.clone(),
        None => (0..table.schema().fields().len()).collect(),
    };
    let mut kept_columns = Vec::new();
    let mut kept_fields = Vec::new();
    for (i, (qualifier, field)) in scan.projected_schema.iter().enumerate() {
        if refers_to(&read, &Column::new(qualifier.cloned(), field.name())) {
            let Some(&column) = all.get(i) else {
                return Ok(None);
            };
            kept_columns.push(column);
            kept_fields.push((qualifier.cloned(), Arc::clone(field)));
        }
    }
    let scan_schema = Arc::new(DFSchema::new_with_metadata(
        kept_fields,
        scan.projected_schema.metadata().clone(),
    )?);
    let search = KnnSearch {
        collection: table.name().clone(),
        incarnation: table.incarnation(),
        function: call.function,
        query: call.query,
        k,
        tags,
        tag_params,
        settings,
        projection: kept_columns,
    };
    let node = KnnNode {
        engine: Arc::clone(table.engine()),
        search,
        residual,
        schema: node_schema(&scan_schema)?,
        scan_schema,
    };
    let ranked = LogicalPlan::Sort(Sort {
        expr: vec![Expr::Column(Column::new_unqualified(RANK_COLUMN)).sort(true, false)],
        input: Arc::new(LogicalPlan::Extension(Extension {
            node: Arc::new(node),
        })),
        fetch: Some(k),
    });
    // A projection that does not plan (it would only be a reference this
    // rule resolved differently from DataFusion) keeps DataFusion's plan.
    let Ok(chain_top) = Projection::try_new(chain_top, Arc::new(ranked)) else {
        return Ok(None);
    };
    let Ok(top) = Projection::try_new(exprs, Arc::new(LogicalPlan::Projection(chain_top))) else {
        return Ok(None);
    };
    Ok(Some(LogicalPlan::Projection(top)))
}

/// Whether one of `references` names `column` (an unqualified reference
/// names any column of that name).
fn refers_to(references: &[&Column], column: &Column) -> bool {
    references
        .iter()
        .any(|r| r.name == column.name && (r.relation.is_none() || r.relation == column.relation))
}
