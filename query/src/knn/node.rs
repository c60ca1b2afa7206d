//! The logical KNN node: a leaf that stands for "the `k` rows of one
//! collection nearest to a vector, with their distance and rank".

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::common::{DFSchema, DFSchemaRef, Result, plan_err};
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};
use valori_engine::Engine;

use super::KnnSearch;

/// See the [module documentation](super). Its schema is the scan's
/// columns (with the qualifiers the query sees), then
/// [`DISTANCE_COLUMN`](super::DISTANCE_COLUMN) (`Float64`) and
/// [`RANK_COLUMN`](super::RANK_COLUMN) (`UInt64`).
#[derive(Clone)]
pub struct KnnNode {
    pub(crate) engine: Arc<Engine>,
    pub(crate) search: KnnSearch,
    /// Conjuncts the engine cannot apply, over `scan_schema`.
    pub(crate) residual: Option<Expr>,
    /// The scan's columns, as the query's expressions name them.
    pub(crate) scan_schema: DFSchemaRef,
    pub(crate) schema: DFSchemaRef,
}

impl KnnNode {
    pub fn search(&self) -> &KnnSearch {
        &self.search
    }

    pub fn residual(&self) -> Option<&Expr> {
        self.residual.as_ref()
    }

    pub fn scan_schema(&self) -> &DFSchemaRef {
        &self.scan_schema
    }
}

impl fmt::Debug for KnnNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        UserDefinedLogicalNodeCore::fmt_for_explain(self, f)
    }
}

// Equality and hashing ignore the engine handle: two nodes over the same
// collection incarnation asking the same thing are the same node.
impl PartialEq for KnnNode {
    fn eq(&self, other: &Self) -> bool {
        self.search == other.search
            && self.residual == other.residual
            && self.scan_schema == other.scan_schema
            && self.schema == other.schema
    }
}

impl Eq for KnnNode {}

impl Hash for KnnNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.search.hash(state);
        self.residual.hash(state);
        self.schema.hash(state);
    }
}

impl PartialOrd for KnnNode {
    /// Nodes are only ordered when equal: DataFusion requires the trait of
    /// extension nodes but never needs to order two different ones.
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (self == other).then_some(Ordering::Equal)
    }
}

impl UserDefinedLogicalNodeCore for KnnNode {
    fn name(&self) -> &str {
        "ValoriKnn"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    /// None: the residual filter is over the node's own scan columns, not
    /// over an input, so DataFusion's expression rewrites (which resolve
    /// columns against the inputs) must not see it. It was simplified and
    /// type-checked before the rule took it.
    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let s = &self.search;
        write!(
            f,
            "ValoriKnn: collection={} distance={} k={} ef={}",
            s.collection,
            s.function,
            s.k,
            s.settings.effective_ef(s.k)
        )?;
        if s.tags != super::TagSet::Any {
            write!(f, " tag={}", s.tags)?;
        }
        for id in &s.tag_params {
            write!(f, " tag={id}")?;
        }
        if let super::QueryVector::Param { id, .. } = &s.query {
            write!(f, " query={id}")?;
        }
        write!(f, " exact={}", s.settings.exact)?;
        if let Some(residual) = &self.residual {
            write!(f, " filter={residual}")?;
        }
        Ok(())
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<Self> {
        if !inputs.is_empty() || !exprs.is_empty() {
            return plan_err!("ValoriKnn takes no inputs and no expressions");
        }
        Ok(self.clone())
    }
}

/// `scan` followed by the distance and rank columns.
pub(crate) fn node_schema(scan: &DFSchema) -> Result<DFSchemaRef> {
    use datafusion::arrow::datatypes::{DataType, Field};
    let mut fields: Vec<_> = scan
        .iter()
        .map(|(q, f)| (q.cloned(), Arc::clone(f)))
        .collect();
    // Nullable like the distance UDF's own result, so that replacing the
    // call by this column leaves the query's schema unchanged.
    fields.push((
        None,
        Arc::new(Field::new(super::DISTANCE_COLUMN, DataType::Float64, true)),
    ));
    fields.push((
        None,
        Arc::new(Field::new(super::RANK_COLUMN, DataType::UInt64, false)),
    ));
    Ok(Arc::new(DFSchema::new_with_metadata(
        fields,
        scan.metadata().clone(),
    )?))
}
