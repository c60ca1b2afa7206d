//! A query's rows as they are produced.
//!
//! [`QueryEngine::run`](crate::QueryEngine::run) answers a query with
//! [`Rows`]: the record batches of DataFusion's stream, passed on one by
//! one, so a front end sends a large answer while it is being read
//! instead of holding all of it. The statement's timeout still covers
//! the whole answer: a stream still running at the statement's deadline
//! ends with [`QueryError::Timeout`].
//!
//! The first batch is produced before `run` returns, so an error that
//! stops a statement before its first row (an unknown table, a vector of
//! the wrong dimension, a plan made for a table since dropped) is the
//! error of `run` itself, as for a statement that was collected whole.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::execution::SendableRecordBatchStream;
use futures::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use crate::{QueryError, QueryOutput};

/// The rows of one query, as a stream of record batches with the
/// statement's schema (also when there are no rows). Each batch carries
/// the statement's column names, which may repeat (`SELECT n, n`), where
/// the plan that made it had to give distinct ones.
pub struct Rows {
    schema: SchemaRef,
    /// Batches produced and not yet taken: the first batch of a started
    /// stream, or every batch of a statement collected whole (deep
    /// statements; [`Rows::from_output`]).
    ready: std::vec::IntoIter<RecordBatch>,
    /// The rest of the answer; `None` once it ended or failed.
    rest: Option<SendableRecordBatchStream>,
    /// When `rest` must have ended (`None` when there is no `rest`).
    deadline: Option<Pin<Box<Sleep>>>,
    limit: Duration,
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows")
            .field("schema", &self.schema)
            .field("running", &self.rest.is_some())
            .finish()
    }
}

impl Rows {
    /// Starts `stream`: waits, at most until `deadline`, for its first
    /// batch.
    pub(crate) async fn start(
        schema: SchemaRef,
        mut stream: SendableRecordBatchStream,
        deadline: Instant,
        limit: Duration,
    ) -> Result<Rows, QueryError> {
        let first = tokio::time::timeout_at(deadline, stream.next())
            .await
            .map_err(|_| QueryError::Timeout { after: limit })?
            .transpose()?;
        Ok(Rows {
            schema,
            rest: first.is_some().then_some(stream),
            ready: first.into_iter().collect::<Vec<_>>().into_iter(),
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
            limit,
        })
    }

    /// Rows already collected.
    pub fn from_output(output: QueryOutput) -> Rows {
        Rows {
            schema: output.schema,
            ready: output.batches.into_iter(),
            rest: None,
            deadline: None,
            limit: Duration::ZERO,
        }
    }

    /// The columns of every batch.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Every remaining batch, for front ends that answer with the whole
    /// result at once (REST's JSON, Python's DataFrames).
    pub async fn collect(mut self) -> Result<QueryOutput, QueryError> {
        let mut batches = Vec::new();
        while let Some(batch) = self.next().await {
            batches.push(batch?);
        }
        Ok(QueryOutput {
            schema: self.schema,
            batches,
        })
    }
}

impl Rows {
    /// `batch` with the statement's column names (the plan's may differ
    /// only where Postgres repeats a name).
    fn named(&self, batch: RecordBatch) -> Result<RecordBatch, QueryError> {
        let schema = batch.schema();
        let fields = schema.fields();
        if fields.len() != self.schema.fields().len()
            || fields
                .iter()
                .zip(self.schema.fields())
                .all(|(a, b)| a.name() == b.name())
        {
            return Ok(batch);
        }
        let named = Schema::new_with_metadata(
            fields
                .iter()
                .zip(self.schema.fields())
                .map(|(f, name)| f.as_ref().clone().with_name(name.name()))
                .collect::<Vec<_>>(),
            schema.metadata().clone(),
        );
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(Arc::new(named), batch.columns().to_vec(), &options)
            .map_err(|e| QueryError::Internal(e.into()))
    }
}

impl Stream for Rows {
    type Item = Result<RecordBatch, QueryError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(batch) = this.ready.next() {
            return Poll::Ready(Some(this.named(batch)));
        }
        let Some(stream) = this.rest.as_mut() else {
            return Poll::Ready(None);
        };
        // Checked before polling as well: a stream whose batches are
        // always ready would otherwise never let the deadline fire.
        let late = this
            .deadline
            .as_mut()
            .is_some_and(|d| d.is_elapsed() || d.as_mut().poll(cx).is_ready());
        if late {
            this.rest = None;
            return Poll::Ready(Some(Err(QueryError::Timeout { after: this.limit })));
        }
        match stream.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(batch))) => Poll::Ready(Some(this.named(batch))),
            Poll::Ready(Some(Err(e))) => {
                this.rest = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.rest = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
