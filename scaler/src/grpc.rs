//! The gRPC face KEDA talks to: `externalscaler.ExternalScaler` (wire-compatible with KEDA's
//! `externalscaler.proto`) over [`State`].
//!
//! `StreamIsActive` sends the current answer when opened, again on every change the aggregate reports
//! (a held request pushed by an interceptor arrives within milliseconds), and at least every stream interval.
//! It ends cleanly when the client goes away or the scaler shuts down, and with the error status if the
//! trigger stops resolving (a deleted route).
//!
//! `StreamMetricSpec` (KEDA 2.21) sends the trigger's metric specs when opened and again whenever they change
//! (a route's target edited in its InterceptorRoute or HTTPScaledObject, or a metric added or removed), so KEDA
//! updates the HPA without the ScaledObject being touched. Both of KEDA's rules hold: the current specs go
//! out at once, and `GetMetricSpec` answers from the same [`specs`] of the same route specs, so the two never
//! disagree. Like `StreamIsActive`, it ends cleanly with the client or the scaler, and with the error status
//! if the trigger stops resolving.

use std::sync::Arc;
use tokio::time::Instant;

use httpscale_core::target::quote;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::proto::externalscaler::external_scaler_server::ExternalScaler;
use crate::proto::externalscaler::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec, MetricValue,
    ScaledObjectRef,
};
use crate::state::{Evaluation, State};

pub struct ScalerService(pub Arc<State>);

fn evaluate(state: &State, r: &ScaledObjectRef) -> Result<Evaluation, Status> {
    state.evaluate(&r.name, &r.namespace, &r.scaler_metadata)
}

/// A trigger's metric specs, as `GetMetricSpec` and `StreamMetricSpec` both send them.
pub fn specs(e: &Evaluation) -> GetMetricSpecResponse {
    #[allow(deprecated)]
    let metric_specs = e
        .metrics
        .iter()
        .map(|m| MetricSpec { metric_name: m.name.clone(), target_size: m.target_int(), target_size_float: m.target })
        .collect();
    GetMetricSpecResponse { metric_specs }
}

/// Sends `r`'s specs now and after every change to them, until the client leaves, the scaler stops, or the
/// trigger fails (sent as the stream's last message).
async fn stream_specs(
    state: Arc<State>,
    r: ScaledObjectRef,
    tx: tokio::sync::mpsc::Sender<Result<GetMetricSpecResponse, Status>>,
) {
    let mut changed = state.subscribe();
    let mut last: Option<GetMetricSpecResponse> = None;
    loop {
        match evaluate(&state, &r) {
            Err(status) => {
                let _ = tx.send(Err(status)).await;
                return;
            }
            Ok(e) => {
                let current = specs(&e);
                if last.as_ref() != Some(&current) {
                    if tx.send(Ok(current.clone())).await.is_err() {
                        return;
                    }
                    last = Some(current);
                }
            }
        }
        tokio::select! {
            c = changed.changed() => if c.is_err() { return },
            _ = tx.closed() => return,
            _ = state.stop.triggered() => return,
        }
    }
}

#[tonic::async_trait]
impl ExternalScaler for ScalerService {
    async fn is_active(&self, request: Request<ScaledObjectRef>) -> Result<Response<IsActiveResponse>, Status> {
        let e = evaluate(&self.0, request.get_ref())?;
        Ok(Response::new(IsActiveResponse { result: e.active }))
    }

    type StreamIsActiveStream = ReceiverStream<Result<IsActiveResponse, Status>>;

    async fn stream_is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        let r = request.into_inner();
        evaluate(&self.0, &r)?; // an unknown reference fails the call itself
        let state = self.0.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut changed = state.subscribe();
            let mut last: Option<bool> = None;
            let mut sent_at = Instant::now();
            loop {
                let e = match evaluate(&state, &r) {
                    Ok(e) => e,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                if last != Some(e.active) || sent_at.elapsed() >= state.stream_interval {
                    if tx.send(Ok(IsActiveResponse { result: e.active })).await.is_err() {
                        return;
                    }
                    if e.active
                        && last == Some(false)
                        && let Some(route) = &e.route
                    {
                        state.record_activation(route);
                    }
                    last = Some(e.active);
                    sent_at = Instant::now();
                }
                tokio::select! {
                    _ = changed.changed() => {}
                    _ = tokio::time::sleep_until(sent_at + state.stream_interval) => {}
                    _ = tx.closed() => return,
                    _ = state.stop.triggered() => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        let e = evaluate(&self.0, request.get_ref())?;
        Ok(Response::new(specs(&e)))
    }

    async fn get_metrics(&self, request: Request<GetMetricsRequest>) -> Result<Response<GetMetricsResponse>, Status> {
        let req = request.into_inner();
        let r = req.scaled_object_ref.ok_or_else(|| Status::invalid_argument("scaledObjectRef is required"))?;
        let e = evaluate(&self.0, &r)?;
        let wanted = |name: &str| req.metric_name.is_empty() || req.metric_name == name;
        #[allow(deprecated)]
        let metric_values: Vec<MetricValue> = e
            .metrics
            .iter()
            .filter(|m| wanted(&m.name))
            .map(|m| MetricValue {
                metric_name: m.name.clone(),
                metric_value: m.value_int(),
                metric_value_float: m.value,
            })
            .collect();
        if metric_values.is_empty() {
            let known: Vec<&str> = e.metrics.iter().map(|m| m.name.as_str()).collect();
            return Err(Status::not_found(format!(
                "metric {} not found (this trigger reports {known:?})",
                quote(&req.metric_name)
            )));
        }
        Ok(Response::new(GetMetricsResponse { metric_values }))
    }

    type StreamMetricSpecStream = ReceiverStream<Result<GetMetricSpecResponse, Status>>;

    async fn stream_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamMetricSpecStream>, Status> {
        let r = request.into_inner();
        evaluate(&self.0, &r)?; // an unknown reference fails the call itself, as StreamIsActive does
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(stream_specs(self.0.clone(), r, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
