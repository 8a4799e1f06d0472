//! The scaler, started in-process on ports the OS picks, and a gRPC client for it built from the project's
//! proto, used the way KEDA uses it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use httpscale_core::Shutdown;
use httpscale_scaler::Config;
use httpscale_scaler::kubernetes::AdminService;
use httpscale_scaler::proto::externalscaler::external_scaler_client::ExternalScalerClient;
use httpscale_scaler::proto::externalscaler::{GetMetricsRequest, MetricValue, ScaledObjectRef};
use tonic::transport::Channel;

use crate::client::client;

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

    /// The Prometheus exposition.
    pub async fn metrics(&self) -> String {
        let addr = self.running.metrics_addr.expect("metrics enabled");
        let resp =
            client().request(Request::get(format!("http://{addr}/metrics")).body(Full::default()).unwrap()).await;
        String::from_utf8(resp.unwrap().into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    /// Triggers shutdown and waits (up to 10 s) until it completes.
    pub async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(10), self.running.wait()).await.expect("scaler stops");
    }
}

/// A scaler reading route specs from `routes_file` and counts from `interceptors` (admin addresses).
pub async fn scaler(routes_file: &Path, interceptors: Vec<String>, tweak: impl FnOnce(&mut Config)) -> Scaler {
    let mut config = Config::for_tests(routes_file, interceptors);
    tweak(&mut config);
    start(config, None).await
}

/// A scaler in Kubernetes mode: interceptors from `svc`'s EndpointSlices, route specs from the cluster.
pub async fn in_cluster(client: kube::Client, svc: &AdminService, tweak: impl FnOnce(&mut Config)) -> Scaler {
    let mut config = Config::for_kubernetes_tests(svc);
    tweak(&mut config);
    start(config, Some(client)).await
}

async fn start(config: Config, client: Option<kube::Client>) -> Scaler {
    let shutdown = Shutdown::new();
    let running = httpscale_scaler::start_with_client(config.validate().unwrap(), client, shutdown.clone()).await;
    Scaler { running: running.unwrap(), shutdown }
}

/// A ScaledObject reference as KEDA sends it.
pub fn so_ref(name: &str, namespace: &str, metadata: &[(&str, &str)]) -> ScaledObjectRef {
    ScaledObjectRef {
        name: name.into(),
        namespace: namespace.into(),
        scaler_metadata: metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>(),
    }
}

/// `GetMetrics` for every metric of `r`.
pub async fn metric_values(client: &mut ExternalScalerClient<Channel>, r: &ScaledObjectRef) -> Vec<MetricValue> {
    let req = GetMetricsRequest { scaled_object_ref: Some(r.clone()), metric_name: String::new() };
    client.get_metrics(req).await.unwrap().into_inner().metric_values
}

/// Sends a GET through an interceptor's proxy in the background (it may be held).
pub fn send_held(proxy: SocketAddr, host: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let req = Request::get(format!("http://{proxy}/")).header("host", host).body(Full::<Bytes>::default());
        let _ = client().request(req.unwrap()).await;
    })
}
