//! The metrics exposition every binary serves on `/metrics`, in the format the scraper asks for, and the same
//! families read back as data (for the OTLP export of [`crate::otel`]).
//!
//! The registries encode OpenMetrics 1.0 text (`prometheus-client`). A scraper that accepts it at least as
//! much as the Prometheus text format gets it as it is; anyone else (no `Accept`, `*/*`, `text/plain`) gets
//! the Prometheus text format 0.0.4, as the Go add-on's `promhttp` handler answers: counters named with their
//! `_total` suffix in `# HELP`/`# TYPE`, no `# UNIT` and no `# EOF` lines, and the same `Content-Type`
//! (`escaping=underscores`: every name here is already in the legacy character set).

use std::collections::BTreeMap;

use http::HeaderValue;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8; escaping=underscores";

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Text,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it weighs `application/openmetrics-text` at
    /// least as high as `text/plain` (Prometheus's own scrapes do), else the Prometheus text format.
    pub fn negotiate(accept: Option<&HeaderValue>) -> Self {
        let Some(accept) = accept.and_then(|a| a.to_str().ok()) else { return Format::Text };
        let (mut openmetrics, mut text) = (0.0_f64, 0.0_f64);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
                .find_map(|q| q.parse::<f64>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text { Format::OpenMetrics } else { Format::Text }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS,
            Format::Text => PROMETHEUS_TEXT,
        }
    }

    /// `openmetrics` (a registry's encoding) in this format.
    pub fn render(self, openmetrics: String) -> String {
        match self {
            Format::OpenMetrics => openmetrics,
            Format::Text => prometheus_text(&openmetrics),
        }
    }
}

/// OpenMetrics text turned into the Prometheus text format 0.0.4.
pub fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // `# HELP` comes before `# TYPE`: a family's descriptor lines wait until its type is known.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (name.to_owned(), kind),
                _ => (name.to_owned(), "untyped"),
            };
            if let Some((_, text)) = help.take() {
                // 0.0.4 escapes only backslash and newline in help text.
                out.push_str(&format!("# HELP {name} {}\n", text.replace("\\\"", "\"")));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
        } else if line.starts_with("# ") {
            // `# UNIT` and `# EOF` do not exist in 0.0.4.
        } else if !line.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// One family of an exposition, read back as data.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The family's name (a counter's without `_total`).
    pub name: String,
    pub help: String,
    pub unit: String,
    pub kind: Kind,
    /// Series by their labels (sorted, without `le`).
    pub series: BTreeMap<Vec<(String, String)>, Series>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Other,
}

/// One series' values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    /// A counter's or gauge's value.
    pub value: f64,
    /// A histogram's cumulative buckets by upper bound, the last one `+Inf`.
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

/// The families of an OpenMetrics exposition (as this project's registries write it: no exemplars, no
/// timestamps). Lines it cannot read are skipped.
pub fn families(openmetrics: &str) -> Vec<Family> {
    let mut out: Vec<Family> = Vec::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let kind = match kind {
                "counter" => Kind::Counter,
                "gauge" => Kind::Gauge,
                "histogram" => Kind::Histogram,
                _ => Kind::Other,
            };
            let (help, unit) = out
                .last()
                .filter(|f| f.name == name && f.kind == Kind::Other && f.series.is_empty())
                .map(|f| (f.help.clone(), f.unit.clone()))
                .unwrap_or_default();
            if out.last().is_some_and(|f| f.name == name) {
                out.pop();
            }
            out.push(Family { name: name.to_owned(), help, unit, kind, series: BTreeMap::new() });
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            let help = text.replace("\\n", "\n").replace("\\\"", "\"").replace("\\\\", "\\");
            out.push(Family {
                name: name.to_owned(),
                help,
                unit: String::new(),
                kind: Kind::Other,
                series: BTreeMap::new(),
            });
        } else if let Some(rest) = line.strip_prefix("# UNIT ") {
            if let (Some(f), Some((_, unit))) = (out.last_mut(), rest.split_once(' ')) {
                f.unit = unit.to_owned();
            }
        } else if !line.starts_with('#')
            && let (Some(f), Some(sample)) = (out.last_mut(), Sample::parse(line))
        {
            f.add(sample);
        }
    }
    out.retain(|f| f.kind != Kind::Other);
    out
}

/// One sample line: `name{labels} value`.
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn parse(line: &str) -> Option<Self> {
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => return None,
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(inner) => {
                let (labels, after) = parse_labels(inner)?;
                (labels, after)
            }
            None => (Vec::new(), rest),
        };
        let value = value.split_whitespace().next()?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().ok()?,
        };
        Some(Self { name: name.to_owned(), labels, value })
    }
}

/// Labels up to the closing `}`, and what follows it.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.to_owned(), value));
        s = &rest[end + 1..];
    }
}

impl Family {
    fn add(&mut self, mut sample: Sample) {
        let suffix = sample.name.strip_prefix(self.name.as_str()).unwrap_or("");
        let le = sample.labels.iter().position(|(k, _)| k == "le").map(|i| sample.labels.remove(i).1);
        sample.labels.sort();
        let series = self.series.entry(sample.labels).or_default();
        match (self.kind, suffix) {
            (Kind::Histogram, "_bucket") => {
                let bound = match le.as_deref() {
                    Some("+Inf") => f64::INFINITY,
                    Some(b) => b.parse().unwrap_or(f64::INFINITY),
                    None => f64::INFINITY,
                };
                series.buckets.push((bound, sample.value));
            }
            (Kind::Histogram, "_sum") => series.sum = sample.value,
            (Kind::Histogram, "_count") => series.count = sample.value,
            (Kind::Counter, "_total") | (Kind::Gauge, "") => series.value = sample.value,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family as Fam;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::{Registry, Unit};

    #[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
    struct L {
        route: String,
    }

    fn exposition() -> String {
        let mut r = Registry::default();
        let c: Fam<L, Counter> = Fam::default();
        c.get_or_create(&L { route: "a \"quoted\" \\ name".into() }).inc_by(3);
        r.register("requests", "Requests \"seen\"", c);
        let g: Gauge = Gauge::default();
        g.set(7);
        r.register("open", "Open things", g);
        let h = Histogram::new([0.5, 1.0]);
        h.observe(0.7);
        h.observe(3.0);
        r.register_with_unit("wait", "Waits", Unit::Seconds, h);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        out
    }

    #[test]
    fn prometheus_scrapers_get_the_text_format_and_openmetrics_when_they_prefer_it() {
        let accept = |s: &'static str| Format::negotiate(Some(&HeaderValue::from_static(s)));
        assert_eq!(Format::negotiate(None), Format::Text, "curl, promhttp's default");
        assert_eq!(accept("*/*"), Format::Text);
        assert_eq!(accept("text/plain"), Format::Text);
        assert_eq!(accept("application/openmetrics-text"), Format::OpenMetrics);
        // Prometheus 2.x/3.x default scrape protocols.
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.1";
        assert_eq!(accept(prometheus), Format::OpenMetrics);
        assert_eq!(accept("text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"), Format::Text);
        assert_eq!(accept("application/openmetrics-text;q=0"), Format::Text);
        assert_eq!(Format::Text.content_type(), "text/plain; version=0.0.4; charset=utf-8; escaping=underscores");
    }

    #[test]
    fn the_text_format_names_counters_with_total_and_drops_unit_and_eof() {
        let text = prometheus_text(&exposition());
        assert!(text.contains("# HELP requests_total Requests \"seen\".\n# TYPE requests_total counter\n"), "{text}");
        assert!(text.contains("requests_total{route=\"a \\\"quoted\\\" \\\\ name\"} 3\n"), "{text}");
        assert!(text.contains("# TYPE open gauge\nopen 7\n"), "{text}");
        assert!(text.contains("# TYPE wait_seconds histogram\n"), "{text}");
        assert!(text.contains("wait_seconds_bucket{le=\"+Inf\"} 2\n"), "{text}");
        assert!(!text.contains("# UNIT") && !text.contains("# EOF"), "{text}");
    }

    #[test]
    fn families_read_back_what_the_registry_wrote() {
        let fams = families(&exposition());
        let names: Vec<_> = fams.iter().map(|f| (f.name.as_str(), f.kind)).collect();
        assert_eq!(names, [("requests", Kind::Counter), ("open", Kind::Gauge), ("wait_seconds", Kind::Histogram)]);
        let requests = &fams[0];
        assert_eq!(requests.help, "Requests \"seen\".");
        let (labels, series) = requests.series.iter().next().unwrap();
        assert_eq!(labels, &vec![("route".to_owned(), "a \"quoted\" \\ name".to_owned())]);
        assert_eq!(series.value, 3.0);
        assert_eq!(fams[1].series.values().next().unwrap().value, 7.0);
        let wait = &fams[2];
        assert_eq!(wait.unit, "seconds");
        let s = wait.series.values().next().unwrap();
        assert_eq!(s.buckets, vec![(0.5, 0.0), (1.0, 1.0), (f64::INFINITY, 2.0)]);
        assert_eq!((s.sum, s.count), (3.7, 2.0));
    }
}
