//! `AVG` and `SUM` of vectors, as pgvector has them: element-wise, the
//! result a vector of the same dimension, NULL rows skipped, NULL when no
//! row has a vector; usable with `GROUP BY` and as window functions.
//!
//! DataFusion has one `avg` and one `sum`, for numbers. [`VectorAggregate`]
//! takes their place under the same names (and aliases): for an argument
//! that is a vector (a list of `f32`, as vector columns are) it
//! accumulates the vectors itself; for any other argument it hands every
//! call to DataFusion's own function, so numbers are summed and averaged
//! exactly as before.
//!
//! The sums are exact: each vector is read as Q16.16 integers (the one
//! conversion every input goes through) and added in `i128`, which no
//! number of rows of at most 2^31 raw units each can overflow in practice
//! (an overflow is an error, never a wrapped value). `SUM` rounds the
//! exact sum once to `f32`; `AVG` divides it by the row count in `f64`
//! (pgvector averages in `float8` too) and rounds to `f32`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{Result, ScalarValue, not_impl_err, plan_err};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::type_coercion::functions::fields_with_udf;
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, Documentation, Expr,
    GroupsAccumulator, Operator, ReversedUDAF, SetMonotonicity, Signature, StatisticsArgs,
};

use crate::functions::{Argument, VectorInputError, Vectors};
use crate::vector_functions::{ListBuilder, is_vector_value, vector_result_type};

/// Which aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VectorAggregateKind {
    Avg,
    Sum,
}

impl VectorAggregateKind {
    const fn name(self) -> &'static str {
        match self {
            VectorAggregateKind::Avg => "avg",
            VectorAggregateKind::Sum => "sum",
        }
    }

    fn builtin(self) -> Arc<AggregateUDF> {
        match self {
            VectorAggregateKind::Avg => datafusion::functions_aggregate::average::avg_udaf(),
            VectorAggregateKind::Sum => datafusion::functions_aggregate::sum::sum_udaf(),
        }
    }
}

/// `avg` or `sum` of numbers (DataFusion's) and of vectors; see the
/// [module documentation](self).
#[derive(Debug)]
pub struct VectorAggregate {
    kind: VectorAggregateKind,
    builtin: Arc<AggregateUDF>,
    signature: Signature,
}

impl PartialEq for VectorAggregate {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

impl Eq for VectorAggregate {}

impl std::hash::Hash for VectorAggregate {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
    }
}

impl VectorAggregate {
    pub fn new(kind: VectorAggregateKind) -> VectorAggregate {
        let builtin = kind.builtin();
        // Arguments are coerced by `coerce_types`: a vector is kept as it
        // is, anything else as DataFusion's own function coerces it.
        let signature = Signature::user_defined(builtin.signature().volatility);
        VectorAggregate {
            kind,
            signature,
            builtin,
        }
    }

    fn inner(&self) -> &Arc<dyn AggregateUDFImpl> {
        self.builtin.inner()
    }
}

/// Registers `avg` and `sum` with `ctx`, in the place of DataFusion's.
pub fn register_functions(ctx: &SessionContext) {
    for kind in [VectorAggregateKind::Avg, VectorAggregateKind::Sum] {
        ctx.register_udaf(AggregateUDF::new_from_impl(VectorAggregate::new(kind)));
    }
}

/// Whether DataFusion's own function takes values of `data_type`.
fn is_number(data_type: &DataType) -> bool {
    data_type.is_numeric()
        || data_type.is_null()
        || matches!(data_type, DataType::Duration(_) | DataType::Interval(_))
}

impl AggregateUDFImpl for VectorAggregate {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner().aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [t] if is_vector_value(t) => Ok(vector_result_type()),
            [t] if is_number(t) => self.inner().return_type(arg_types),
            [t] => plan_err!(
                "{}({t}) is not supported: {} takes numbers or vectors",
                self.kind.name(),
                self.kind.name()
            ),
            _ => plan_err!("{} takes one argument", self.kind.name()),
        }
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [t] if is_vector_value(t) => Ok(arg_types.to_vec()),
            [t] if !is_number(t) => plan_err!(
                "{}({t}) is not supported: {} takes numbers or vectors",
                self.kind.name(),
                self.kind.name()
            ),
            _ => {
                let fields: Vec<FieldRef> = arg_types
                    .iter()
                    .enumerate()
                    .map(|(i, t)| Arc::new(Field::new(format!("arg_{i}"), t.clone(), true)))
                    .collect();
                Ok(fields_with_udf(&fields, self.builtin.as_ref())?
                    .iter()
                    .map(|f| f.data_type().clone())
                    .collect())
            }
        }
    }

    fn is_nullable(&self) -> bool {
        self.inner().is_nullable()
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match acc_args.expr_fields {
            [field] if is_vector_value(field.data_type()) => {
                if acc_args.is_distinct {
                    return not_impl_err!("{}(DISTINCT vector) is not supported", self.kind.name());
                }
                Ok(Box::new(VectorAccumulator::new(self.kind)))
            }
            _ => self.inner().accumulator(acc_args),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        match args.input_fields {
            [field] if is_vector_value(field.data_type()) => Ok(vec![
                Arc::new(Field::new(
                    format!("{}[count]", args.name),
                    DataType::Int64,
                    false,
                )),
                Arc::new(Field::new(
                    format!("{}[sums]", args.name),
                    DataType::Binary,
                    true,
                )),
            ]),
            _ => self.inner().state_fields(args),
        }
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        match args.expr_fields {
            [field] if is_vector_value(field.data_type()) => false,
            _ => self.inner().groups_accumulator_supported(args),
        }
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        self.inner().create_groups_accumulator(args)
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match args.expr_fields {
            [field] if is_vector_value(field.data_type()) => self.accumulator(args),
            _ => self.inner().create_sliding_accumulator(args),
        }
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner().order_sensitivity()
    }

    fn simplify_expr_op_literal(
        &self,
        agg_function: &AggregateFunction,
        arg: &Expr,
        op: Operator,
        lit: &Expr,
        arg_is_left: bool,
    ) -> Result<Option<Expr>> {
        // Only `arg op literal` with a binary operator reaches here; on
        // vectors the operators are function calls, so this is numbers.
        self.inner()
            .simplify_expr_op_literal(agg_function, arg, op, lit, arg_is_left)
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        self.inner().reverse_expr()
    }

    fn value_from_stats(&self, statistics_args: &StatisticsArgs) -> Option<ScalarValue> {
        if is_vector_value(statistics_args.return_type) {
            return None;
        }
        self.inner().value_from_stats(statistics_args)
    }

    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        self.inner().default_value(data_type)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner().documentation()
    }

    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        if is_vector_value(data_type) {
            return SetMonotonicity::NotMonotonic;
        }
        self.inner().set_monotonicity(data_type)
    }
}

/// The running count and exact raw sums of one group's vectors.
#[derive(Debug)]
struct VectorAccumulator {
    kind: VectorAggregateKind,
    count: i64,
    /// Empty until the first vector fixes the dimension.
    sums: Vec<i128>,
}

impl VectorAccumulator {
    fn new(kind: VectorAggregateKind) -> VectorAccumulator {
        VectorAccumulator {
            kind,
            count: 0,
            sums: Vec::new(),
        }
    }

    /// Adds (`sign` 1) or removes (`sign` −1) `count` vectors whose
    /// components sum to `sums`.
    fn add(&mut self, sums: &[i128], count: i64, sign: i128) -> Result<()> {
        if self.sums.is_empty() && self.count == 0 {
            self.sums = vec![0; sums.len()];
        }
        if sums.len() != self.sums.len() {
            return Err(VectorInputError::DimensionMismatch {
                function: self.kind.name(),
                left: self.sums.len() as u64,
                right: sums.len() as u64,
            }
            .into());
        }
        for (total, &x) in self.sums.iter_mut().zip(sums) {
            *total = x
                .checked_mul(sign)
                .and_then(|x| total.checked_add(x))
                .ok_or_else(|| overflow(self.kind))?;
        }
        self.count = if sign > 0 {
            self.count.checked_add(count)
        } else {
            self.count.checked_sub(count)
        }
        .ok_or_else(|| overflow(self.kind))?;
        if self.count == 0 {
            self.sums.clear();
        }
        Ok(())
    }

    fn update(&mut self, values: &[ArrayRef], sign: i128) -> Result<()> {
        let [array] = values else {
            return plan_err!("{} takes one argument", self.kind.name());
        };
        let field = Field::new("vector", array.data_type().clone(), true);
        let vectors = Vectors::from_columnar(
            &ColumnarValue::Array(Arc::clone(array)),
            &field,
            self.kind.name(),
            Argument::Only,
        )?;
        let mut row_sums = Vec::new();
        for row in 0..array.len() {
            if let Some(v) = vectors.row(row) {
                row_sums.clear();
                row_sums.extend(v.iter().map(|&x| i128::from(x)));
                self.add(&row_sums, 1, sign)?;
            }
        }
        Ok(())
    }
}

/// A sum out of `i128`'s range (or a count out of `i64`'s).
fn overflow(kind: VectorAggregateKind) -> datafusion::common::DataFusionError {
    datafusion::common::DataFusionError::Execution(format!(
        "{}: the sum of the vectors is out of range",
        kind.name()
    ))
}

impl Accumulator for VectorAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.update(values, 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.update(values, -1)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let mut builder = ListBuilder::with_capacity(1);
        if self.count == 0 {
            builder.push(None);
        } else {
            let count = self.count as f64;
            builder.push(Some(
                self.sums
                    .iter()
                    .map(|&s| match self.kind {
                        // One rounding, i128 → f32; the scaling by 2^-16 is
                        // exact.
                        VectorAggregateKind::Sum => s as f32 / 65536.0,
                        VectorAggregateKind::Avg => (s as f64 / count / 65536.0) as f32,
                    })
                    .collect(),
            ));
        }
        let list = builder.finish()?;
        ScalarValue::try_from_array(&list, 0)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.sums.capacity() * std::mem::size_of::<i128>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let sums = (self.count > 0).then(|| {
            self.sums
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect::<Vec<u8>>()
        });
        Ok(vec![
            ScalarValue::Int64(Some(self.count)),
            ScalarValue::Binary(sums),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [counts, sums] = states else {
            return plan_err!("{}: a partial state has two columns", self.kind.name());
        };
        let counts: &Int64Array = counts.as_primitive::<Int64Type>();
        let sums: &BinaryArray = sums.as_binary::<i32>();
        let mut parsed = Vec::new();
        for row in 0..counts.len() {
            let count = counts.value(row);
            if count == 0 || sums.is_null(row) {
                continue;
            }
            let bytes = sums.value(row);
            // The states are this accumulator's own (`state`): 16 bytes
            // per component.
            parsed.clear();
            parsed.extend(bytes.chunks_exact(16).map(|c| {
                let mut le = [0u8; 16];
                le.copy_from_slice(c);
                i128::from_le_bytes(le)
            }));
            self.add(&parsed, count, 1)?;
        }
        Ok(())
    }
}
