//! Machine description, readable tables and the JSON report.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

/// What the numbers were measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub mem_total_mib: u64,
    pub kernel: String,
    pub nginx: Option<String>,
    pub interceptor: String,
    /// `false` when this program was built without optimisations (its numbers then mean little).
    pub release_build: bool,
}

impl Machine {
    pub fn describe(tools: &crate::procs::Tools) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".into(), |(_, v)| v.trim().to_string());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_total_mib = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
        let nginx = tools.nginx.as_ref().map(|p| {
            Command::new(p)
                .arg("-v")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
                .unwrap_or_else(|_| p.display().to_string())
        });
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            mem_total_mib,
            kernel,
            nginx,
            interceptor: tools.interceptor_name(),
            release_build: !cfg!(debug_assertions),
        }
    }

    pub fn print(&self) {
        println!(
            "machine: {} CPU ({}), {} MiB RAM, Linux {}; nginx: {}",
            self.nproc,
            self.cpu_model,
            self.mem_total_mib,
            self.kernel,
            self.nginx.as_deref().unwrap_or("not installed")
        );
        println!("interceptor: {}", self.interceptor);
        if !self.release_build {
            println!("WARNING: loadtest is a debug build; build with --release for meaningful numbers");
        }
    }
}

/// A plain-text table with right-aligned columns (the first left-aligned).
pub struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(head: &[&str]) -> Table {
        Table { head: head.iter().map(|s| s.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self) {
        let cols = self.head.len();
        let mut width = vec![0; cols];
        for r in std::iter::once(&self.head).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(cols) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let line = |r: &Vec<String>| {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| if i == 0 { format!("{c:<w$}", w = width[i]) } else { format!("{c:>w$}", w = width[i]) })
                .collect();
            println!("  {}", cells.join("  "));
        };
        line(&self.head);
        println!("  {}", width.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
        for r in &self.rows {
            line(r);
        }
    }
}

/// Writes `value` as pretty JSON to `path` (`-` = stdout).
pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    if path.as_os_str() == "-" {
        println!("{text}");
    } else {
        std::fs::write(path, text + "\n")?;
        println!("JSON report: {}", path.display());
    }
    Ok(())
}

/// `12345.6` → `12.3k`.
pub fn kilo(x: f64) -> String {
    if x >= 1000.0 { format!("{:.1}k", x / 1000.0) } else { format!("{x:.0}") }
}
