//! Flight SQL over the statement layer, and `DoPut` into a collection.

use std::sync::Arc;

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{Any, SqlInfo};
use futures::TryStreamExt;
use tonic::{Request, Response, Status};
use valori_query::ops;

use super::ingest::Load;
use super::{FlightError, FlightState, auth, put_result};

/// arrow-flight's `FlightSqlService` for Valori.
#[derive(Debug)]
pub struct SqlService {
    state: Arc<FlightState>,
}

impl SqlService {
    pub fn new(state: Arc<FlightState>) -> SqlService {
        SqlService { state }
    }

    /// `DoPut` with a path descriptor: the stream's batches, converted and
    /// checked whole, written as one event.
    async fn load(
        &self,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<arrow_flight::PutResult, FlightError> {
        auth::writer(&self.state.auth, request.metadata())?;
        let mut stream = request.into_inner();
        let descriptor = match stream.peek().await {
            Some(Ok(first)) => first.flight_descriptor.clone(),
            Some(Err(status)) => return Err(status.clone().into()),
            None => None,
        };
        let Some(descriptor) = descriptor.filter(|d| d.r#type() == DescriptorType::Path) else {
            return Err(FlightError::BadTarget {
                what: "DoPut descriptor",
                given: "(not a path)".to_owned(),
            });
        };
        let [name] = descriptor.path.as_slice() else {
            return Err(FlightError::BadPath {
                len: descriptor.path.len(),
            });
        };
        let name = ops::collection_name(name)?;
        let batches = FlightRecordBatchStream::new_from_flight_data(
            stream.map_err(arrow_flight::error::FlightError::from),
        )
        .map_err(FlightError::Decode);
        let load = Load::read(Box::pin(batches)).await?;
        let engine = Arc::clone(&self.state.engine);
        let (rows, columns) = load.into_parts();
        let inserted =
            tokio::task::spawn_blocking(move || ops::insert_batch(&engine, name, rows, columns))
                .await??;
        Ok(put_result(
            inserted.ids.len() as u64,
            inserted.receipt.seq,
            inserted.receipt.log_root.to_string(),
        ))
    }
}

#[tonic::async_trait]
impl FlightSqlService for SqlService {
    type FlightService = SqlService;

    async fn do_put_fallback(
        &self,
        request: Request<PeekableFlightDataStream>,
        _message: Any,
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        let result = self.load(request).await?;
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(result)]))))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
