//! The gRPC listener's connections, held to the same limits as every other listener
//! ([`httpscale_core::listener`]): a budget of open connections (`503` past it), the HTTP/2 preface within the
//! header timeout (a client that never sends it is closed), and an HTTP/2 connection with no open stream
//! closed after the idle timeout. [`CountStreams`] tells each connection when a call is open (a
//! `StreamIsActive` stream keeps KEDA's connection busy for as long as it lasts), and counts the gRPC limits a
//! call meets on the listener (`max_streams`: its connection is at the concurrent stream bound, so the
//! client's next streams wait; `message_size`: its request message was refused with `OUT_OF_RANGE`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use httpscale_core::Shutdown;
use httpscale_core::listener::{ConnState, Gatekeeper, Guarded, GuardedBody, Limit};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

/// A connection handed to tonic: the socket with its deadlines.
pub struct GrpcConn(Guarded<TcpStream>);

/// What tonic puts in each call's extensions: the connection's state.
#[derive(Clone)]
pub struct ConnInfo(pub Arc<ConnState>);

impl Connected for GrpcConn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        ConnInfo(self.0.state().clone())
    }
}

impl AsyncRead for GrpcConn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for GrpcConn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// The connections accepted on `listener` (within `gate`) whose client spoke in time, until `stop` fires.
pub fn incoming(listener: TcpListener, gate: Arc<Gatekeeper>, stop: Shutdown) -> ReceiverStream<io::Result<GrpcConn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (stream, _, permit) = tokio::select! {
                accepted = gate.accept(&listener) => accepted,
                _ = stop.triggered() => return,
            };
            let (gate, tx) = (gate.clone(), tx.clone());
            tokio::spawn(async move {
                let start = tokio::time::Instant::now();
                let Some(protocol) = gate.protocol(&stream).await else { return };
                let state = ConnState::new(permit, protocol, start);
                let _ = tx.send(Ok(GrpcConn(Guarded::new(stream, state)))).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Counts each call on its connection until its response body ends; the connection's stream bound.
#[derive(Clone)]
pub struct CountStreams<S>(pub S, pub u32);

/// `grpc-status` of a trailers-only answer: the request message was over the size bound.
const OUT_OF_RANGE: &[u8] = b"11";

impl<S, B, RB> tower::Service<Request<B>> for CountStreams<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = Response<GuardedBody<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let guard = req.extensions().get::<ConnInfo>().map(|c| c.0.begin());
        if let Some(g) = guard.as_ref().filter(|g| g.state().in_flight() >= self.1) {
            g.state().hit(Limit::MaxStreams, "gRPC connection at its concurrent stream bound: new streams wait");
        }
        let call = self.0.call(req);
        Box::pin(async move {
            let resp = call.await?;
            if let Some(g) = &guard
                && resp.headers().get("grpc-status").is_some_and(|s| s.as_bytes() == OUT_OF_RANGE)
            {
                g.state().hit(Limit::MessageSize, "gRPC request refused with OUT_OF_RANGE: its message is too large");
            }
            Ok(resp.map(|b| GuardedBody::new(b, guard)))
        })
    }
}
