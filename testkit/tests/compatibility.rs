//! `docs/compatibility.md` against the code: every environment variable, flag, metric and CRD field that a
//! `same` or `documented` row names in its item column must exist, so a row cannot claim a surface item that
//! was renamed or removed. Names come from the binaries' typed configs (clap), their metric registries and the
//! generated CRDs; a variable read outside clap (a deprecated alias) counts when the crate's source reads it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

const VERDICTS: [&str; 3] = ["same", "documented", "missing"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// One table row: id, item, upstream, ours, verdict.
struct Row {
    id: String,
    item: String,
    verdict: String,
}

fn rows(doc: &str) -> Vec<Row> {
    let mut out = Vec::new();
    for line in doc.lines().filter(|l| l.starts_with("| ")) {
        // Cells are separated by `|` not preceded by a backslash (`\|` is a pipe inside a cell).
        let cells: Vec<&str> = split_cells(line);
        let id = cells[0];
        if !(id.len() >= 2 && id.as_bytes()[0].is_ascii_uppercase() && id[1..].bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        assert_eq!(cells.len(), 5, "row {id} needs 5 cells (id, item, upstream, httpscale, verdict): {line}");
        out.push(Row { id: id.into(), item: cells[1].into(), verdict: cells[4].into() });
    }
    out
}

fn split_cells(line: &str) -> Vec<&str> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = Vec::new();
    let (mut start, bytes) = (0, inner.as_bytes());
    for i in 0..bytes.len() {
        if bytes[i] == b'|' && (i == 0 || bytes[i - 1] != b'\\') {
            cells.push(inner[start..i].trim());
            start = i + 1;
        }
    }
    cells.push(inner[start..].trim());
    cells
}

/// The backticked words of a cell.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

fn is_env(s: &str) -> bool {
    s.len() > 3
        && s.as_bytes()[0].is_ascii_uppercase()
        && s.contains('_')
        && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn is_flag(s: &str) -> bool {
    s.starts_with("--") && s[2..].bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
}

const METRIC_PREFIXES: [&str; 5] = ["interceptor_", "scaler_", "controller_runtime_", "leader_election_", "httpscale_"];

fn is_metric(s: &str) -> bool {
    METRIC_PREFIXES.iter().any(|p| s.starts_with(p)) && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

fn is_crd_path(s: &str) -> bool {
    (s.starts_with("spec.") || s.starts_with("status."))
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'[' || b == b']')
}

/// Everything the three binaries declare: env names and long flags.
fn declared() -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut envs, mut flags) = (BTreeSet::new(), BTreeSet::new());
    let commands = [
        httpscale_interceptor::Config::command(),
        httpscale_scaler::Config::command(),
        httpscale_operator::Config::command(),
    ];
    for cmd in commands {
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                envs.insert(env.to_string_lossy().into_owned());
            }
            if let Some(long) = arg.get_long() {
                flags.insert(format!("--{long}"));
            }
        }
    }
    (envs, flags)
}

/// All Rust source of the binaries' crates, for names read outside clap.
fn sources() -> String {
    let mut text = String::new();
    for krate in ["core", "interceptor", "scaler", "operator"] {
        let mut stack = vec![root().join(krate).join("src")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    text.push_str(&std::fs::read_to_string(&path).unwrap());
                }
            }
        }
    }
    text
}

/// The metric family names the three registries expose (`# TYPE` lines), counters also with `_total`.
fn metric_names() -> BTreeSet<String> {
    let texts = [
        httpscale_interceptor::metrics::Metrics::new().encode(),
        httpscale_scaler::metrics::Metrics::new().encode(),
        httpscale_operator::metrics::Metrics::new().encode(),
    ];
    let mut names = BTreeSet::new();
    for line in texts.iter().flat_map(|t| t.lines()) {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            names.insert(name.to_string());
            if kind == "counter" {
                names.insert(format!("{name}_total"));
            }
        }
    }
    names
}

/// Families with labels show in the encoding only once they have a series, so a family also counts when its
/// crate registers it by that name.
fn metric_exists(name: &str, encoded: &BTreeSet<String>, src: &str) -> bool {
    encoded.contains(name) || src.contains(&format!("\"{}\"", name.trim_end_matches("_total")))
}

fn crds() -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(root().join("charts/keda-add-ons-http/files/crds.yaml")).unwrap();
    serde_yaml::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect()
}

/// Whether `spec.a.b[].c` is a property of one of the CRDs' schemas.
fn crd_has(crds: &[serde_yaml::Value], path: &str) -> bool {
    crds.iter().any(|crd| {
        let mut node = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        for part in path.split('.') {
            if node["type"] == "array" {
                node = &node["items"];
            }
            node = &node["properties"][part.trim_end_matches("[]")];
            if node.is_null() {
                return false;
            }
        }
        true
    })
}

/// Section H names fields of the ScaledObject the operator writes: the one it writes for an HTTPScaledObject
/// that sets every optional field.
fn written_scaled_object() -> serde_json::Value {
    let spec = serde_yaml::from_str(
        "scaleTargetRef: {name: app, kind: Deployment, apiVersion: apps/v1, service: app, port: 8080}\n\
         replicas: {min: 0, max: 3}\nscaledownPeriod: 60\ninitialCooldownPeriod: 10\n",
    )
    .unwrap();
    let mut obj = httpscale_core::spec::HTTPScaledObject::new("app", spec);
    obj.metadata.namespace = Some("default".into());
    let scaler =
        httpscale_operator::desired::ScalerAddress { service: "s".into(), namespace: "keda".into(), port: 9090 };
    serde_json::to_value(httpscale_operator::desired::scaled_object(&obj, &scaler)).unwrap()
}

/// Whether `spec.a.b[0]` is present in a JSON object.
fn json_has(value: &serde_json::Value, path: &str) -> bool {
    let mut node = value;
    for part in path.split('.') {
        node = match part.strip_suffix("[0]") {
            Some(key) => &node[key][0],
            None => &node[part],
        };
        if node.is_null() {
            return false;
        }
    }
    true
}

#[test]
fn every_named_env_var_flag_metric_and_crd_field_of_a_kept_row_exists() {
    let doc = std::fs::read_to_string(root().join("docs/compatibility.md")).unwrap();
    let rows = rows(&doc);
    assert!(rows.len() >= 263, "one row per upstream surface item; found {}", rows.len());
    let (envs, flags) = declared();
    let (src, metrics, crds, written) = (sources(), metric_names(), crds(), written_scaled_object());
    let mut checked = 0;
    let mut absent = Vec::new();
    for row in &rows {
        assert!(
            VERDICTS.contains(&row.verdict.as_str()),
            "row {}: verdict {:?} is not one of {VERDICTS:?}",
            row.id,
            row.verdict
        );
        if row.verdict == "missing" || row.item.contains("removed") {
            continue;
        }
        for name in code_spans(&row.item) {
            let found = if is_env(name) {
                envs.contains(name) || src.contains(&format!("\"{name}\""))
            } else if is_flag(name) {
                flags.contains(name)
            } else if is_metric(name) {
                metric_exists(name, &metrics, &src)
            } else if is_crd_path(name) && row.id.starts_with('H') {
                json_has(&written, name)
            } else if is_crd_path(name) {
                crd_has(&crds, name)
            } else {
                continue;
            };
            checked += 1;
            if !found {
                absent.push(format!("{}: `{name}`", row.id));
            }
        }
    }
    assert!(absent.is_empty(), "named in docs/compatibility.md but not in the code or CRDs: {absent:#?}");
    assert!(checked > 60, "the table names env vars, flags, metrics and CRD fields; only {checked} were checked");
}

#[test]
fn the_checks_would_notice_a_missing_name() {
    let (envs, flags) = declared();
    assert!(envs.contains("KEDA_HTTP_PROXY_PORT") && !envs.contains("KEDA_HTTP_NO_SUCH_SETTING"));
    assert!(flags.contains("--metrics-bind-address"));
    let (metrics, src) = (metric_names(), sources());
    assert!(metrics.contains("scaler_pinger_fetch_errors_total"), "{metrics:?}");
    assert!(metric_exists("interceptor_request_count_total", &metrics, &src));
    assert!(!metric_exists("interceptor_no_such_metric_total", &metrics, &src));
    let crds = crds();
    assert!(crd_has(&crds, "spec.coldStart.overflow"));
    assert!(crd_has(&crds, "spec.rules[].hosts"));
    assert!(!crd_has(&crds, "spec.coldStart.noSuchField"));
    let written = written_scaled_object();
    assert!(json_has(&written, "spec.triggers[0]") && json_has(&written, "spec.cooldownPeriod"));
    assert!(!json_has(&written, "spec.noSuchField"));
    let doc = "| A1 | `X_Y` | u | o | same |\n| id | item | a | b | verdict |\n| B2 | a \\| b | u | o | missing |\n";
    let parsed = rows(doc);
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[1].item, "a \\| b");
}
