//! Structure checks over a crate's `src/`, run for every crate of the workspace by `tests/structure.rs`:
//!
//! - **no import cycles between modules**: the graph has an edge from module A to module B when A's code
//!   outside `#[cfg(test)]` names B or something in B, through a `use` (`crate::`, `super::`, `self::` or a
//!   child module's name) or a qualified path in code, macro arguments included. A `mod b;` line alone is
//!   not an edge (declaring a module is not depending on it). Every strongly connected component of more
//!   than one module is reported with the paths that tie it.
//! - **no long functions**: no `fn` (free, method or default trait method, tests included) longer than
//!   [`MAX_FN_LINES`], counted from `fn` to its closing brace.
//! - **typed errors**: a function returning `Result<_, String>` (or a `type Err = String`) only where clap
//!   wants one, as a `value_parser = <function>`; [`string_errors`] finds both in a file.
//!
//! Parsing uses `syn`, so strings, comments and raw identifiers cannot fool it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;
use syn::{Item, UseTree};

/// The longest a function may be, in lines.
pub const MAX_FN_LINES: usize = 100;

/// Why a crate could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StructureError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot parse {path}: {source}")]
    Parse { path: PathBuf, source: syn::Error },
    #[error("module {module} declared in {parent} has no file")]
    MissingModule { module: String, parent: PathBuf },
}

/// One module: its path from the crate root, the file it lives in, and its items outside `#[cfg(test)]`.
struct Module {
    path: Vec<String>,
    file: PathBuf,
    items: Vec<Item>,
    children: BTreeSet<String>,
}

/// A module-to-module reference, with the path that makes it (for the report).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub via: String,
}

/// A function over the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongFunction {
    pub file: PathBuf,
    pub line: usize,
    pub name: String,
    pub lines: usize,
}

/// A function returning `Result<_, String>`, or an associated `type Err = String` (named `Err`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringError {
    pub file: PathBuf,
    pub line: usize,
    pub name: String,
}

/// What [`string_errors`] finds in one file.
#[derive(Debug, Default)]
pub struct StringErrors {
    pub found: Vec<StringError>,
    /// The functions named by `value_parser = <path>` in attributes (the path's last name).
    pub value_parsers: BTreeSet<String>,
}

/// A crate's modules, read from its root file (`src/lib.rs` or `src/main.rs`).
pub struct CrateModules {
    modules: Vec<Module>,
}

fn read(path: &Path) -> Result<syn::File, StructureError> {
    let text = std::fs::read_to_string(path).map_err(|source| StructureError::Read { path: path.into(), source })?;
    syn::parse_file(&text).map_err(|source| StructureError::Parse { path: path.into(), source })
}

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && matches!(&a.meta, syn::Meta::List(l) if l.tokens.clone().into_iter().any(|t| is_ident(&t, "test")))
    })
}

fn is_ident(t: &TokenTree, name: &str) -> bool {
    matches!(t, TokenTree::Ident(i) if i == name)
        || matches!(t, TokenTree::Group(g) if g.stream().into_iter().any(|t| is_ident(&t, name)))
}

fn attrs_of(item: &Item) -> &[syn::Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

impl CrateModules {
    /// Reads the crate rooted at `root` (its `lib.rs` or `main.rs`) and every module file it declares.
    pub fn load(root: &Path) -> Result<Self, StructureError> {
        let mut modules = Vec::new();
        let dir = root.parent().unwrap_or(Path::new(".")).to_path_buf();
        let file = read(root)?;
        collect(file.items, Vec::new(), &dir, root, &mut modules)?;
        Ok(Self { modules })
    }

    /// Every file the crate's modules live in.
    pub fn files(&self) -> BTreeSet<PathBuf> {
        self.modules.iter().map(|m| m.file.clone()).collect()
    }

    /// Every reference from one module to another.
    pub fn edges(&self) -> Vec<Edge> {
        let known: HashMap<&[String], &Module> = self.modules.iter().map(|m| (m.path.as_slice(), m)).collect();
        let mut edges = BTreeSet::new();
        for m in &self.modules {
            let mut paths = Paths::default();
            for item in &m.items {
                match item {
                    Item::Use(u) => use_paths(&u.tree, Vec::new(), &mut paths.0),
                    Item::Mod(_) => {}
                    other => paths.visit_item(other),
                }
            }
            for segs in paths.0 {
                if let Some(to) = resolve(m, &segs, &known)
                    && to != m.path
                {
                    edges.insert(Edge { from: name(&m.path), to: name(&to), via: segs.join("::") });
                }
            }
        }
        edges.into_iter().collect()
    }

    /// The import cycles: every strongly connected component of more than one module, with the edges inside it.
    pub fn cycles(&self) -> Vec<Vec<Edge>> {
        let edges = self.edges();
        let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for e in &edges {
            graph.entry(&e.from).or_default().insert(&e.to);
            graph.entry(&e.to).or_default();
        }
        strongly_connected(&graph)
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|c| {
                edges.iter().filter(|e| c.contains(e.from.as_str()) && c.contains(e.to.as_str())).cloned().collect()
            })
            .collect()
    }
}

fn name(path: &[String]) -> String {
    if path.is_empty() { "crate".into() } else { path.join("::") }
}

fn collect(
    items: Vec<Item>,
    path: Vec<String>,
    dir: &Path,
    file: &Path,
    out: &mut Vec<Module>,
) -> Result<(), StructureError> {
    let items: Vec<Item> = items.into_iter().filter(|i| !is_test(attrs_of(i))).collect();
    let mut children = BTreeSet::new();
    for item in &items {
        let Item::Mod(m) = item else { continue };
        let child = m.ident.to_string();
        children.insert(child.clone());
        let mut child_path = path.clone();
        child_path.push(child.clone());
        match &m.content {
            Some((_, inner)) => collect(inner.clone(), child_path, &dir.join(&child), file, out)?,
            None => {
                let flat = dir.join(format!("{child}.rs"));
                let nested = dir.join(&child).join("mod.rs");
                let (found, child_dir) = if flat.exists() {
                    (flat, dir.join(&child))
                } else if nested.exists() {
                    (nested, dir.join(&child))
                } else {
                    return Err(StructureError::MissingModule { module: child, parent: file.into() });
                };
                collect(read(&found)?.items, child_path, &child_dir, &found, out)?;
            }
        }
    }
    out.push(Module { path, file: file.into(), items, children });
    Ok(())
}

/// Every path a `use` tree imports, as segments.
fn use_paths(tree: &UseTree, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let with = |s: String| {
        let mut p = prefix.clone();
        p.push(s);
        p
    };
    match tree {
        UseTree::Path(p) => use_paths(&p.tree, with(p.ident.to_string()), out),
        UseTree::Name(n) if n.ident == "self" => out.push(prefix),
        UseTree::Name(n) => out.push(with(n.ident.to_string())),
        UseTree::Rename(r) if r.ident == "self" => out.push(prefix),
        UseTree::Rename(r) => out.push(with(r.ident.to_string())),
        UseTree::Glob(_) => out.push(prefix),
        UseTree::Group(g) => g.items.iter().for_each(|t| use_paths(t, prefix.clone(), out)),
    }
}

/// Qualified paths in code and in macro arguments.
#[derive(Default)]
struct Paths(Vec<Vec<String>>);

impl<'ast> Visit<'ast> for Paths {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.segments.len() > 1 {
            self.0.push(p.segments.iter().map(|s| s.ident.to_string()).collect());
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.visit_path(&m.path);
        token_paths(m.tokens.clone(), &mut self.0);
    }

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {}

    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {}
}

/// `a::b::c` sequences inside a macro's tokens.
fn token_paths(tokens: TokenStream, out: &mut Vec<Vec<String>>) {
    fn flush(current: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if current.len() > 1 {
            out.push(std::mem::take(current));
        }
        current.clear();
    }
    let mut current: Vec<String> = Vec::new();
    let mut colons = 0;
    for t in tokens {
        match t {
            TokenTree::Ident(i) if current.is_empty() || colons == 2 => {
                current.push(i.to_string());
                colons = 0;
            }
            TokenTree::Ident(i) => {
                flush(&mut current, out);
                current.push(i.to_string());
                colons = 0;
            }
            TokenTree::Punct(p) if p.as_char() == ':' && !current.is_empty() && colons < 2 => colons += 1,
            TokenTree::Group(g) => {
                flush(&mut current, out);
                colons = 0;
                token_paths(g.stream(), out);
            }
            _ => {
                flush(&mut current, out);
                colons = 0;
            }
        }
    }
    flush(&mut current, out);
}

/// The module a path names (the longest prefix that is a module), if it is in this crate.
fn resolve(from: &Module, segs: &[String], known: &HashMap<&[String], &Module>) -> Option<Vec<String>> {
    let (mut target, rest): (Vec<String>, &[String]) = match segs.first()?.as_str() {
        "crate" => (Vec::new(), &segs[1..]),
        "self" => (from.path.clone(), &segs[1..]),
        "super" => {
            let mut base = from.path.clone();
            let ups = segs.iter().take_while(|s| *s == "super").count();
            for _ in 0..ups {
                base.pop()?;
            }
            (base, &segs[ups..])
        }
        first if from.children.contains(first) => (from.path.clone(), segs),
        _ => return None,
    };
    for s in rest {
        let mut next = target.clone();
        next.push(s.clone());
        if !known.contains_key(next.as_slice()) {
            break;
        }
        target = next;
    }
    Some(target)
}

/// Tarjan's algorithm.
fn strongly_connected<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<BTreeSet<&'a str>> {
    struct State<'a> {
        index: HashMap<&'a str, usize>,
        low: HashMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<BTreeSet<&'a str>>,
    }
    fn visit<'a>(v: &'a str, graph: &BTreeMap<&'a str, BTreeSet<&'a str>>, s: &mut State<'a>) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(w, graph, s);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).map_or(lw, |l| *l);
                s.low.insert(v, lv.min(lw));
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.insert(w);
                if w == v {
                    break;
                }
            }
            s.out.push(component);
        }
    }
    let mut s = State {
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for &v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(v, graph, &mut s);
        }
    }
    s.out
}

/// Every function in `file` longer than `max` lines.
pub fn long_functions(file: &Path, max: usize) -> Result<Vec<LongFunction>, StructureError> {
    struct Lengths<'a> {
        file: &'a Path,
        max: usize,
        out: Vec<LongFunction>,
    }
    impl Lengths<'_> {
        fn check(&mut self, name: &syn::Ident, fn_token: &syn::token::Fn, block: &syn::Block) {
            let start = fn_token.span.start().line;
            let end = block.brace_token.span.close().end().line;
            let lines = end + 1 - start;
            if lines > self.max {
                self.out.push(LongFunction { file: self.file.into(), line: start, name: name.to_string(), lines });
            }
        }
    }
    impl<'ast> Visit<'ast> for Lengths<'_> {
        fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
            self.check(&f.sig.ident, &f.sig.fn_token, &f.block);
            syn::visit::visit_item_fn(self, f);
        }
        fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
            self.check(&f.sig.ident, &f.sig.fn_token, &f.block);
            syn::visit::visit_impl_item_fn(self, f);
        }
        fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
            if let Some(block) = &f.default {
                self.check(&f.sig.ident, &f.sig.fn_token, block);
            }
            syn::visit::visit_trait_item_fn(self, f);
        }
    }
    let parsed = read(file)?;
    let mut lengths = Lengths { file, max, out: Vec::new() };
    lengths.visit_file(&parsed);
    Ok(lengths.out)
}

fn is_string(ty: &syn::Type) -> bool {
    matches!(ty, syn::Type::Path(p) if p.qself.is_none() && p.path.is_ident("String"))
}

/// `Result<_, String>` (any path ending in `Result`).
fn is_string_result(output: &syn::ReturnType) -> bool {
    let syn::ReturnType::Type(_, ty) = output else { return false };
    let syn::Type::Path(p) = ty.as_ref() else { return false };
    let Some(last) = p.path.segments.last() else { return false };
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return false };
    last.ident == "Result" && matches!(args.args.iter().nth(1), Some(syn::GenericArgument::Type(t)) if is_string(t))
}

/// The function a `value_parser = a::b::<T>` names: `b`.
fn value_parsers(tokens: TokenStream, out: &mut BTreeSet<String>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, t) in tokens.iter().enumerate() {
        if let TokenTree::Group(g) = t {
            value_parsers(g.stream(), out);
        }
        let assigned = matches!(tokens.get(i + 1), Some(TokenTree::Punct(p)) if p.as_char() == '=');
        if !(matches!(t, TokenTree::Ident(i) if i == "value_parser") && assigned) {
            continue;
        }
        let path = tokens[i + 2..]
            .iter()
            .take_while(|t| !matches!(t, TokenTree::Punct(p) if matches!(p.as_char(), ',' | '<')));
        if let Some(name) =
            path.filter_map(|t| if let TokenTree::Ident(i) = t { Some(i.to_string()) } else { None }).last()
        {
            out.insert(name);
        }
    }
}

/// The functions in `file` returning `Result<_, String>`, its `type Err = String` items, and the value
/// parsers its attributes name.
pub fn string_errors(file: &Path) -> Result<StringErrors, StructureError> {
    struct Finder<'a> {
        file: &'a Path,
        out: StringErrors,
    }
    impl Finder<'_> {
        fn found(&mut self, name: &syn::Ident) {
            let line = name.span().start().line;
            self.out.found.push(StringError { file: self.file.into(), line, name: name.to_string() });
        }
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_signature(&mut self, sig: &'ast syn::Signature) {
            if is_string_result(&sig.output) {
                self.found(&sig.ident);
            }
            syn::visit::visit_signature(self, sig);
        }
        fn visit_impl_item_type(&mut self, t: &'ast syn::ImplItemType) {
            if t.ident == "Err" && is_string(&t.ty) {
                self.found(&t.ident);
            }
            syn::visit::visit_impl_item_type(self, t);
        }
        fn visit_attribute(&mut self, a: &'ast syn::Attribute) {
            if let syn::Meta::List(l) = &a.meta {
                value_parsers(l.tokens.clone(), &mut self.out.value_parsers);
            }
        }
    }
    let parsed = read(file)?;
    let mut finder = Finder { file, out: StringErrors::default() };
    finder.visit_file(&parsed);
    Ok(finder.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_of(files: &[(&str, &str)]) -> (tempfile::TempDir, CrateModules) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let m = CrateModules::load(&dir.path().join("lib.rs")).unwrap();
        (dir, m)
    }

    #[test]
    fn a_cycle_through_use_super_and_qualified_paths_is_found() {
        let (_d, m) = crate_of(&[
            ("lib.rs", "mod a; mod b; mod c;"),
            ("a.rs", "use crate::b::X; fn f() { tracing::info!(\"{}\", crate::c::Y); }"),
            ("b.rs", "pub struct X;"),
            ("c/mod.rs", "mod d; pub use d::g; pub const Y: u8 = 1;"),
            ("c/d.rs", "fn g() -> super::super::a::Z { todo!() }"),
        ]);
        let cycles = m.cycles();
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        let names: BTreeSet<&str> = cycles[0].iter().flat_map(|e| [e.from.as_str(), e.to.as_str()]).collect();
        assert_eq!(names, BTreeSet::from(["a", "c", "c::d"]), "{cycles:?}");
    }

    #[test]
    fn declarations_tests_and_outside_paths_are_not_edges() {
        let (_d, m) = crate_of(&[
            ("lib.rs", "pub mod a; pub use a::A; fn f() { std::mem::drop(1); Self::x(); }"),
            ("a.rs", "pub struct A; #[cfg(test)] mod tests { use crate::f; }"),
        ]);
        assert!(m.cycles().is_empty());
        assert_eq!(m.edges().iter().map(|e| (e.from.as_str(), e.to.as_str())).collect::<Vec<_>>(), [("crate", "a")]);
    }

    #[test]
    fn functions_are_measured_from_fn_to_the_closing_brace() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.rs");
        let body = "    let _ = 1;\n".repeat(5);
        std::fs::write(
            &file,
            format!("/// doc\nfn short() {{\n{body}}}\nimpl S {{\n    fn long() {{\n{body}{body}}}\n}}\n"),
        )
        .unwrap();
        let found = long_functions(&file, 8).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].name.as_str(), found[0].line, found[0].lines), ("long", 10, 12));
    }

    #[test]
    fn string_errors_and_the_value_parsers_that_may_have_them_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.rs");
        let text = r#"
#[derive(clap::Parser)]
struct A {
    #[arg(long, value_parser = crate::settings::duration, default_value = "1s")]
    a: u64,
    #[arg(long, value_parser = list::<usize>)]
    b: Vec<usize>,
}
fn duration(s: &str) -> Result<u64, String> { todo!() }
fn list<T>(s: &str) -> std::result::Result<Vec<T>, String> { todo!() }
fn typed(s: &str) -> Result<u64, Error> { todo!() }
fn text() -> String { todo!() }
impl FromStr for C { type Err = String; fn from_str(s: &str) -> Result<Self, Self::Err> { todo!() } }
"#;
        std::fs::write(&file, text).unwrap();
        let found = string_errors(&file).unwrap();
        let names: Vec<_> = found.found.iter().map(|f| (f.name.as_str(), f.line)).collect();
        assert_eq!(names, [("duration", 9), ("list", 10), ("Err", 13)]);
        assert_eq!(found.value_parsers, BTreeSet::from(["duration".to_owned(), "list".to_owned()]));
    }
}
