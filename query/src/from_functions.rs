//! Scalar functions called in `FROM`: `SELECT * FROM current_schema()`,
//! `SELECT * FROM version()` (TypeORM asks both when it connects). As in
//! Postgres, such a call is a relation of one row whose one column is
//! named after the function. Every scalar function without a table
//! function of the same name is registered so.

use std::sync::Arc;

use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::Result;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, ScalarUDF};
use datafusion::prelude::SessionContext;

/// Registers a table function for each scalar function `ctx` has that
/// no table function's name takes. Call it after every scalar function is
/// registered.
pub(crate) fn register(ctx: &SessionContext) {
    let state = ctx.state();
    let tables = state.table_functions();
    let mut scalars: Vec<(String, Arc<ScalarUDF>)> = state
        .scalar_functions()
        .iter()
        .filter(|(name, _)| !tables.contains_key(*name))
        .map(|(name, udf)| (name.clone(), Arc::clone(udf)))
        .collect();
    scalars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, udf) in scalars {
        ctx.register_udtf(&name.clone(), Arc::new(ScalarInFrom { name, udf }));
    }
}

/// One scalar function as a relation of one row.
#[derive(Debug)]
struct ScalarInFrom {
    /// The name the call uses, which names the column.
    name: String,
    udf: Arc<ScalarUDF>,
}

impl TableFunctionImpl for ScalarInFrom {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let call = Expr::ScalarFunction(ScalarFunction::new_udf(
            Arc::clone(&self.udf),
            args.exprs().to_vec(),
        ))
        .alias(&self.name);
        let plan = LogicalPlanBuilder::empty(true)
            .project(vec![call])?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}
