//! The check that keeps the engine's layering true: it reads every `crate::…` path in the
//! engine's sources (comments and `#[cfg(test)]` code left out), maps each file to its top-level
//! module, and fails when the modules form a cycle or a module uses one above it in
//! [`LAYERS`] (the order written down in the crate's docs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The engine's top-level modules, bottom to top; modules on one line may not use each other.
/// A module may use only modules of lower lines.
const LAYERS: &[&[&str]] = &[
    &["data", "config", "fence", "pool"],
    &["error", "restart", "metrics"],
    &["time"],
    &["checkpoint", "coordination"],
    &["mailbox"],
    &["channel"],
    &["operator"],
    &["task"],
    &["async_io"],
    &["graph"],
    &["job"],
    &["rest"],
    &["stream"],
];

/// The modules each top-level module uses, from the sources under `src`.
fn edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = std::fs::read_dir(src)
        .expect("the engine's src directory")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            match name.strip_suffix(".rs") {
                Some(m) if m != "lib" && m != "layers" => Some(m.to_string()),
                Some(_) => None,
                None => e.path().is_dir().then_some(name),
            }
        })
        .collect();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![src.to_path_buf()];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
            continue;
        }
        if p.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = p.strip_prefix(src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "layers" {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        // Test code may reach anywhere: it is not part of the layering.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for line in code.lines() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for (i, _) in line.match_indices("crate::") {
                let name: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if name != top && modules.contains(&name) {
                    out.entry(top.clone()).or_default().insert(name);
                }
            }
        }
        out.entry(top).or_default();
    }
    out
}

/// Every cycle's modules (strongly connected components of more than one module).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Tarjan's algorithm, small enough to spell out.
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(next) = s.edges.get(v) {
            for w in next {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let l = s.low[w].min(s.low[v]);
                    s.low.insert(v, l);
                } else if s.on_stack.contains(w) {
                    let l = s.index[w].min(s.low[v]);
                    s.low.insert(v, l);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn the_top_level_modules_form_no_cycle_and_follow_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = edges(&src);
    let found = cycles(&edges);
    assert!(
        found.is_empty(),
        "modules in a cycle: {found:?}\nedges: {edges:#?}"
    );
    let layer_of = |m: &str| LAYERS.iter().position(|l| l.contains(&m));
    let mut wrong = Vec::new();
    for (from, tos) in &edges {
        let Some(lf) = layer_of(from) else {
            wrong.push(format!(
                "'{from}' is in no layer (add it to LAYERS and the crate docs)"
            ));
            continue;
        };
        for to in tos {
            match layer_of(to) {
                Some(lt) if lt < lf => {}
                _ => wrong.push(format!("'{from}' uses '{to}', which is not below it")),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_cycle_is_found() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut add = |a: &str, b: &str| {
        edges.entry(a.into()).or_default().insert(b.into());
        edges.entry(b.into()).or_default();
    };
    add("channel", "task");
    add("task", "checkpoint");
    add("checkpoint", "channel");
    add("stream", "job");
    assert_eq!(
        cycles(&edges),
        vec![vec![
            "channel".to_string(),
            "checkpoint".into(),
            "task".into()
        ]]
    );
}
