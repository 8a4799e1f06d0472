//! The workspace's structure, checked on every test run so it stays true: no import cycles between the
//! modules of any crate, no function longer than `MAX_FN_LINES` in any crate's `src/`, and `String` as an
//! error type only in clap value parsers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use httpscale_testkit::repo;
use httpscale_testkit::structure::{CrateModules, MAX_FN_LINES, long_functions, string_errors};

/// Every crate root of the workspace (`src/lib.rs` and `src/main.rs` of each member).
fn crate_roots() -> Vec<PathBuf> {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let members = manifest.split("members = [").nth(1).and_then(|s| s.split(']').next()).expect("workspace members");
    let mut roots = Vec::new();
    for member in members.split(',').map(|m| m.trim().trim_matches('"')).filter(|m| !m.is_empty()) {
        let found: Vec<PathBuf> =
            ["src/lib.rs", "src/main.rs"].iter().map(|f| repo().join(member).join(f)).filter(|p| p.exists()).collect();
        assert!(!found.is_empty(), "member {member} has no src/lib.rs or src/main.rs");
        roots.extend(found);
    }
    roots
}

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let mut report = String::new();
    for root in crate_roots() {
        for cycle in CrateModules::load(&root).unwrap().cycles() {
            report.push_str(&format!("\n{}: a cycle through\n", root.display()));
            for e in cycle {
                report.push_str(&format!("  {} -> {} (via {})\n", e.from, e.to, e.via));
            }
        }
    }
    assert!(report.is_empty(), "modules must import one way along the data flow:{report}");
}

#[test]
fn no_function_is_longer_than_the_limit() {
    let mut long = Vec::new();
    for root in crate_roots() {
        for file in CrateModules::load(&root).unwrap().files() {
            long.extend(long_functions(&file, MAX_FN_LINES).unwrap());
        }
    }
    let report: Vec<String> =
        long.iter().map(|f| format!("{}:{} {} ({} lines)", f.file.display(), f.line, f.name, f.lines)).collect();
    assert!(report.is_empty(), "functions over {MAX_FN_LINES} lines:\n{}", report.join("\n"));
}

#[test]
fn string_errors_are_left_to_clap_value_parsers() {
    let (mut found, mut parsers) = (Vec::new(), std::collections::BTreeSet::new());
    for root in crate_roots() {
        for file in CrateModules::load(&root).unwrap().files() {
            let errors = string_errors(&file).unwrap();
            found.extend(errors.found);
            parsers.extend(errors.value_parsers);
        }
    }
    let report: Vec<String> = found
        .iter()
        .filter(|f| !parsers.contains(&f.name))
        .map(|f| format!("{}:{} {}", f.file.display(), f.line, f.name))
        .collect();
    assert!(report.is_empty(), "typed errors (thiserror) outside clap's `value_parser = f`:\n{}", report.join("\n"));
}

#[test]
fn every_crate_is_checked() {
    let roots = crate_roots();
    for member in ["core", "interceptor", "scaler", "operator", "loadtest", "testkit"] {
        assert!(roots.iter().any(|r| r.starts_with(repo().join(member))), "{member} is not checked");
    }
}
