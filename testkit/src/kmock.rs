//! kmock's in-memory Kubernetes API server (`tests/peers/kmock_apiserver.py`, installed by
//! `scripts/setup-test-peers.sh`), started on a port it picks and reports, and stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{Killed, peers_python, repo, spawn_reporting_port};

pub struct Kmock {
    _process: Killed,
    pub url: String,
}

impl Kmock {
    /// Serves `resources`, each `group/version/plural=Kind` (`v1/services=Service` for the core group).
    pub fn start(resources: &[&str]) -> Self {
        let mut cmd = Command::new(peers_python());
        cmd.arg(repo().join("tests/peers/kmock_apiserver.py")).args(["--realistic", "--port", "0"]);
        for r in resources {
            cmd.args(["--resource", r]);
        }
        let (process, port) = spawn_reporting_port(&mut cmd);
        Self { _process: process, url: format!("http://127.0.0.1:{port}") }
    }

    /// A client for it.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(kube::Config::new(self.url.parse().unwrap())).unwrap()
    }

    /// Writes a kubeconfig for it into `dir` (with `namespace` as the context's default, if given).
    pub fn kubeconfig(&self, dir: &Path, namespace: Option<&str>) -> PathBuf {
        let path = dir.join("kubeconfig");
        let ns = namespace.map(|n| format!(", namespace: {n}")).unwrap_or_default();
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: kmock, cluster: {{server: '{}'}}}}]\nusers: [{{name: u, user: {{}}}}]\ncontexts: [{{name: c, context: {{cluster: kmock, user: u{ns}}}}}]\ncurrent-context: c\n",
                self.url
            ),
        )
        .unwrap();
        path
    }
}
