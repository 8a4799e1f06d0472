//! The count layer: counting for the scaler. The request is counted (concurrency and request counter) before
//! any waiting, so a held request already shows as in flight; it stays counted until the response body ends
//! or is dropped, which covers streams, errors, timeouts and clients that leave. A request the server parked
//! was counted on arrival ([`Parked`]): that count is adopted, not begun twice.

use std::task::{Context, Poll};

use http::Request;
use httpscale_core::queue::InFlight;
use tower::{Layer, Service};

use super::error::ProxyError;
use super::types::{OnAnswer, Parked, ProxyResponse, Routed, Then};

#[derive(Clone, Copy)]
pub struct CountLayer;

impl<S> Layer<S> for CountLayer {
    type Service = CountService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CountService { inner }
    }
}

#[derive(Clone)]
pub struct CountService<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for CountService<S>
where
    S: Service<Request<B>, Response = ProxyResponse, Error = ProxyError>,
{
    type Response = ProxyResponse;
    type Error = ProxyError;
    type Future = Then<S::Future, InFlight>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let in_flight = req.extensions().get::<Routed>().map(|r| {
            let counters = &r.route.counters;
            let parked = req.extensions().get::<Parked>().and_then(Parked::take_count);
            parked.filter(|c| c.counts_for(counters)).unwrap_or_else(|| counters.begin())
        });
        Then::new(self.inner.call(req), in_flight)
    }
}

/// The count moves to the answer's body, which holds it until it ends.
impl OnAnswer for InFlight {
    fn on_answer(self, resp: &mut ProxyResponse) {
        resp.body_mut().hold_in_flight(self);
    }
}

#[cfg(test)]
mod tests;
