//! Real interceptors and a real scaler on loopback, and a gRPC client built from the project's proto.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use httpscale_core::Shutdown;
use httpscale_scaler::proto::externalscaler::external_scaler_client::ExternalScalerClient;
use httpscale_scaler::proto::externalscaler::{GetMetricsRequest, MetricValue, ScaledObjectRef};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::transport::Channel;

pub struct Interceptor {
    pub running: httpscale_interceptor::Running,
    pub shutdown: Shutdown,
    pub file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Interceptor {
    pub fn admin(&self) -> String {
        self.running.admin_addr.to_string()
    }
    pub async fn stop(self) {
        self.shutdown.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.running.wait()).await;
    }
}

pub async fn interceptor(routes: &str) -> Interceptor {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    std::fs::write(&file, routes).unwrap();
    let mut config = httpscale_interceptor::Config::for_file(&file);
    config.shutdown_delay = Duration::ZERO;
    config.proxy_threads = 1;
    let shutdown = Shutdown::new();
    let running = httpscale_interceptor::start(config.validate().unwrap(), shutdown.clone()).await.unwrap();
    Interceptor { running, shutdown, file, _dir: dir }
}

pub struct Scaler {
    pub running: httpscale_scaler::Running,
    pub shutdown: Shutdown,
}

impl Scaler {
    pub async fn client(&self) -> ExternalScalerClient<Channel> {
        ExternalScalerClient::connect(format!("http://{}", self.running.grpc_addr)).await.unwrap()
    }
    pub async fn channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.running.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
    pub async fn metrics(&self) -> String {
        let addr = self.running.metrics_addr.unwrap();
        let resp = Client::builder(TokioExecutor::new())
            .build_http::<Full<Bytes>>()
            .request(Request::get(format!("http://{addr}/metrics")).body(Full::default()).unwrap())
            .await
            .unwrap();
        String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }
    pub async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(10), self.running.wait()).await.expect("scaler stops");
    }
}

pub async fn scaler(
    routes_file: &std::path::Path,
    interceptors: Vec<String>,
    tweak: impl FnOnce(&mut httpscale_scaler::Config),
) -> Scaler {
    let mut config = httpscale_scaler::Config::for_tests(routes_file, interceptors);
    tweak(&mut config);
    let shutdown = Shutdown::new();
    let running = httpscale_scaler::start(config.validate().unwrap(), shutdown.clone()).await.unwrap();
    Scaler { running, shutdown }
}

pub fn so_ref(name: &str, namespace: &str, metadata: &[(&str, &str)]) -> ScaledObjectRef {
    ScaledObjectRef {
        name: name.into(),
        namespace: namespace.into(),
        scaler_metadata: metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>(),
    }
}

pub async fn metric_values(client: &mut ExternalScalerClient<Channel>, r: &ScaledObjectRef) -> Vec<MetricValue> {
    let req = GetMetricsRequest { scaled_object_ref: Some(r.clone()), metric_name: String::new() };
    client.get_metrics(req).await.unwrap().into_inner().metric_values
}

/// Sends a GET through an interceptor's proxy in the background (it may be held).
pub fn send_held(proxy: SocketAddr, host: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let req = Request::get(format!("http://{proxy}/")).header("host", host).body(Full::default()).unwrap();
        let _ = client.request(req).await;
    })
}

/// Sends a GET and waits for the answer.
pub async fn send(proxy: SocketAddr, host: &str) -> http::StatusCode {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::get(format!("http://{proxy}/")).header("host", host).body(Full::default()).unwrap();
    client.request(req).await.unwrap().status()
}

pub async fn free_addr() -> SocketAddr {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap()
}

/// A web server answering 200 on loopback.
pub async fn backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
            });
        }
    });
    addr
}

pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
